"""Field-aware word-match features of (query, item) pairs, for the list-fusion head.

The cross-encoder's prior is one number: how well the query's words are matched anywhere in the item
text. Where they are matched matters too: a query's words in the *title* and *class* mean the item is
that kind of product; in the feature values only, they describe an attribute of some other product.
And so does what the item has that the query lacks ("vanity **lighting**" for "dorel vanity"). Per
pair, over the item text's three fields (`title | class | feature values`, `retrieval.catalog.item_texts`):

- ``min_word_sim``: the worst-matched query word's best cosine anywhere (one missing modifier);
- ``title_sim`` / ``class_sim`` / ``values_sim``: mean over query words of the best cosine in that field;
- ``exact_all`` / ``exact_title`` / ``exact_class``: share of query words present verbatim (plural-folded);
- ``title_covered`` / ``class_covered``: mean over the field's words of their best cosine to a query word
  (the title's first word, a collection name, is skipped);
- ``title_words``: the title's length in words.

Word vectors are WordLlama's: the mean of a word's sub-word piece embeddings, L2-normalised (as in
the cross-encoder's prior). Item words are indexed once at load (a vocabulary of the catalog's words,
each item field a padded row of word ids), so a request is one small matrix product of the query's
words against the vocabulary plus a few vectorised gathers over the candidates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

MATCH_FEATURES = (
    "min_word_sim", "title_sim", "class_sim", "values_sim", "exact_all", "exact_title", "exact_class",
    "title_covered", "class_covered", "title_words",
)
FIELDS = ("title", "class", "values")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def fold_plural(word: str) -> str:
    """sofas -> sofa, but glass / bass stay (crude, symmetric, and all an exact-match share needs)."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def split_fields(text: str) -> tuple[str, str, str]:
    title, cls, *values = [*text.split(" | "), ""]
    return title, cls, " ".join(v for v in values if v)


class WordVectors:
    """Unit word vectors from WordLlama's piece embeddings (mean over the word's pieces), memoised."""

    def __init__(self) -> None:
        from retrieval.wordllama import load_token_embeddings, load_tokenizer

        self._table = load_token_embeddings()
        self._tok = load_tokenizer()
        self._cache: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return int(self._table.shape[1])

    def __call__(self, batch: Sequence[str]) -> np.ndarray:
        missing = [w for w in dict.fromkeys(batch) if w not in self._cache]
        if missing:
            encoded = self._tok.encode_batch(missing, add_special_tokens=False)
            for w, enc in zip(missing, encoded, strict=True):
                v = self._table[enc.ids].mean(axis=0) if enc.ids else np.zeros(self.dim, np.float32)
                self._cache[w] = (v / max(float(np.linalg.norm(v)), 1e-6)).astype(np.float32)
        if not batch:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._cache[w] for w in batch])


class MatchFeatures:
    """`features(query, item_ids)` -> (n, len(MATCH_FEATURES)) for items of a fixed catalog."""

    def __init__(self, texts: Sequence[str], vectors: WordVectors | None = None) -> None:
        self.vectors = vectors or WordVectors()
        vocab: dict[str, int] = {}
        rows: dict[str, list[list[int]]] = {f: [] for f in FIELDS}
        for text in texts:
            for name, field in zip(FIELDS, split_fields(text), strict=True):
                rows[name].append([vocab.setdefault(w, len(vocab)) for w in words(field)])
        self.vocab = list(vocab)
        self.word_vectors = self.vectors(self.vocab)  # (V, d)
        folded: dict[str, int] = {}
        self.folded_ids = np.array([folded.setdefault(fold_plural(w), len(folded)) for w in self.vocab]
                                   + [-1], dtype=np.int64)  # index -1 (padding) -> -1
        self._folded = folded
        self.fields = {}
        for name in FIELDS:
            width = max((len(r) for r in rows[name]), default=0) or 1
            ids = np.full((len(texts), width), -1, dtype=np.int32)
            for i, r in enumerate(rows[name]):
                ids[i, : len(r)] = r
            self.fields[name] = ids

    def features(self, query: str, item_ids: np.ndarray) -> np.ndarray:
        item_ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        out = np.zeros((item_ids.size, len(MATCH_FEATURES)), dtype=np.float32)
        qwords = words(query)
        if item_ids.size == 0 or not qwords:
            return out
        field_ids = {f: self.fields[f][item_ids] for f in FIELDS}  # (n, L_f), -1 = padding
        # Cosines of the query's words to the whole catalog vocabulary, (q, V + 1): one small product
        # (a few thousand words), cheaper than gathering the candidates' rows; column V is padding's.
        sims_all = np.zeros((len(qwords), len(self.vocab) + 1), dtype=np.float32)
        sims_all[:, :-1] = self.vectors(qwords) @ self.word_vectors.T
        qfolded = np.array([self._folded.get(fold_plural(w), -2) for w in qwords], dtype=np.int64)
        best, exact, covered = {}, {}, {}
        for f, ids in field_ids.items():
            valid = ids >= 0
            sims = np.where(valid[None], sims_all[:, ids], -np.inf)  # (q, n, L)
            b = sims.max(axis=2)
            best[f] = np.where(np.isfinite(b), b, 0.0)  # (q, n); an empty field matches nothing
            same = (self.folded_ids[ids][None] == qfolded[:, None, None]) & valid[None]
            exact[f] = same.any(axis=2)  # (q, n)
            covered[f] = (np.where(valid, sims.max(axis=0), 0.0), valid)  # (n, L)
        anywhere = np.maximum.reduce([best[f] for f in FIELDS])
        title_cov, title_valid = covered["title"]
        title_valid = title_valid.copy()
        title_valid[:, 0] = False  # the collection (brand-like) first word
        class_cov, class_valid = covered["class"]
        cols = [
            anywhere.min(axis=0),
            best["title"].mean(axis=0), best["class"].mean(axis=0), best["values"].mean(axis=0),
            (exact["title"] | exact["class"] | exact["values"]).mean(axis=0),
            exact["title"].mean(axis=0), exact["class"].mean(axis=0),
            _masked_mean(title_cov, title_valid), _masked_mean(class_cov, class_valid),
            (field_ids["title"] >= 0).sum(axis=1),
        ]
        out[:] = np.stack(cols, axis=1)
        return out


def _masked_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    count = valid.sum(axis=1)
    return np.where(count > 0, np.where(valid, values, 0.0).sum(axis=1) / np.maximum(count, 1), 0.0)

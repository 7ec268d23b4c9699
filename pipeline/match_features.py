"""Field-aware word-match features of (query, item) pairs, for the list-fusion head.

The cross-encoder's prior is one number: how well the query's words are matched anywhere in the item
text. Where they are matched matters too: a query's words in the *title* and *class* mean the item is
that kind of product; in the feature values only, they describe an attribute of some other product.
And so does what the item has that the query lacks ("vanity **lighting**" for "dorel vanity"). Per
pair, over the item text's three fields (`title | class | feature values`, `catalog.item_texts`):

- ``min_word_sim``: the worst-matched query word's best cosine anywhere (one missing modifier);
- ``title_sim`` / ``class_sim`` / ``values_sim``: mean over query words of the best cosine in that field;
- ``exact_all`` / ``exact_title`` / ``exact_class``: share of query words present verbatim (plural-folded);
- ``title_coverage`` / ``class_coverage``: mean over the field's words of their best cosine to a query
  word (what the item has that the query lacks; every word counts: nothing assumes a title layout);
- ``title_words``: the title's length in words.

Word vectors are WordLlama's: the mean of a word's sub-word piece embeddings, L2-normalised (as in
the cross-encoder's prior). Item words are indexed once at load (a vocabulary of the catalog's words,
each item field a padded row of word ids), so a request is one small matrix product of the query's
words against the vocabulary plus a few vectorised gathers over the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cachetools import LRUCache

from catalog.io import words

MATCH_FEATURES = (
    "min_word_sim", "title_sim", "class_sim", "values_sim", "exact_all", "exact_title", "exact_class",
    "title_coverage", "class_coverage", "title_words",
)
FIELDS = ("title", "class", "values")


def fold_plural(word: str) -> str:
    """sofas -> sofa, but glass / bass stay (crude, symmetric, and all an exact-match share needs)."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def split_fields(text: str) -> tuple[str, str, str]:
    title, cls, *values = [*text.split(" | "), ""]
    return title, cls, " ".join(v for v in values if v)


class WordVectors:
    """Unit word vectors from WordLlama's piece embeddings (mean over the word's pieces), memoised."""

    def __init__(self, cache_size: int = 65_536) -> None:
        from retrieval.wordllama import load_token_embeddings, load_tokenizer

        self._table = load_token_embeddings()
        self._tok = load_tokenizer()
        # Query words are open-ended: a long-running server must not grow the memo without end.
        self._cache: LRUCache[str, np.ndarray] = LRUCache(cache_size)

    @property
    def dim(self) -> int:
        return int(self._table.shape[1])

    def _compute(self, words: list[str]) -> list[np.ndarray]:
        out = []
        for enc in self._tok.encode_batch(words, add_special_tokens=False):
            v = self._table[enc.ids].mean(axis=0) if enc.ids else np.zeros(self.dim, np.float32)
            out.append((v / max(float(np.linalg.norm(v)), 1e-6)).astype(np.float32))
        return out

    def __call__(self, batch: Sequence[str]) -> np.ndarray:
        if not batch:
            return np.zeros((0, self.dim), np.float32)
        if len(batch) > self._cache.maxsize:  # a bulk call (a catalog's vocabulary): don't churn the memo
            return np.stack(self._compute(list(batch)))
        found = {w: self._cache.get(w) for w in dict.fromkeys(batch)}
        missing = [w for w, v in found.items() if v is None]
        for w, v in zip(missing, self._compute(missing), strict=True):
            found[w] = self._cache[w] = v
        return np.stack([found[w] for w in batch])


class MatchFeatures:
    """`features(query, item_ids)` -> (n, len(MATCH_FEATURES)) for items of a fixed catalog."""

    def __init__(self, texts: Sequence[str], vectors: WordVectors | None = None, sim_cache_size: int = 2048
                 ) -> None:
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
        # Each query word's cosines to the whole vocabulary (+ a padding column). The product reads
        # the whole (V, d) table, which outgrows the cache; queries repeat their words, so keep rows.
        self._sim_rows: LRUCache[str, np.ndarray] = LRUCache(sim_cache_size)
        # All three fields side by side, one padded row of word ids per item: a request is then one
        # gather and a few segment reductions (`reduceat` at `bounds`), not a loop of small ops per field.
        blocks = []
        for name in FIELDS:
            width = max((len(r) for r in rows[name]), default=0) or 1
            block = np.full((len(texts), width), -1, dtype=np.int32)
            for i, r in enumerate(rows[name]):
                block[i, : len(r)] = r
            blocks.append(block)
        self.ids = np.concatenate(blocks, axis=1)  # (items, L), -1 = padding
        self.bounds = np.cumsum([0] + [b.shape[1] for b in blocks[:-1]])  # where each field starts

    def _similarities(self, qwords: list[str]) -> np.ndarray:
        rows = {w: self._sim_rows.get(w) for w in dict.fromkeys(qwords)}
        missing = [w for w, r in rows.items() if r is None]
        if missing:
            sims = np.full((len(missing), len(self.vocab) + 1), -np.inf, dtype=np.float32)  # -inf: padding
            sims[:, :-1] = self.vectors(missing) @ self.word_vectors.T
            for w, row in zip(missing, sims, strict=True):
                rows[w] = self._sim_rows[w] = row
        return np.stack([rows[w] for w in qwords])

    def features(self, query: str, item_ids: np.ndarray) -> np.ndarray:
        item_ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        out = np.zeros((item_ids.size, len(MATCH_FEATURES)), dtype=np.float32)
        qwords = words(query)
        if item_ids.size == 0 or not qwords:
            return out
        ids = self.ids[item_ids]  # (n, L)
        valid = ids >= 0
        # Cosines of the query's words to the candidates' words, (q, n, L); padding is -inf.
        sims = self._similarities(qwords)[:, ids]
        best = np.maximum.reduceat(sims, self.bounds, axis=2)  # (q, n, field)
        best[~np.isfinite(best)] = 0.0  # an empty field matches nothing
        qfolded = np.array([self._folded.get(fold_plural(w), -2) for w in qwords], dtype=np.int64)
        same = self.folded_ids[ids][None] == qfolded[:, None, None]  # padding folds to -1: never the same
        exact = np.logical_or.reduceat(same, self.bounds, axis=2)
        covered = np.where(valid, sims.max(axis=0), 0.0)  # (n, L): each word's best cosine to the query
        title, cls = slice(0, self.bounds[1]), slice(self.bounds[1], self.bounds[2])
        cols = [
            best.max(axis=2).min(axis=0),
            *best.mean(axis=0).T,
            exact.any(axis=2).mean(axis=0), exact[:, :, 0].mean(axis=0), exact[:, :, 1].mean(axis=0),
            _masked_mean(covered[:, title], valid[:, title]), _masked_mean(covered[:, cls], valid[:, cls]),
            valid[:, title].sum(axis=1),
        ]
        out[:] = np.stack(cols, axis=1)
        return out


def _masked_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    count = valid.sum(axis=1)
    return np.where(count > 0, np.where(valid, values, 0.0).sum(axis=1) / np.maximum(count, 1), 0.0)

"""BM25 lexical baseline (bm25s) over a catalog's product name, class, description and feature values.

`BM25Index.search(queries, k)` returns `(ids, scores)` shaped like `ItemIndex.search` (best first, id -1 /
score -inf padding), but takes query *texts*: BM25 has no query vectors. Only items that share at least one
query term are returned, so a query whose words are all unknown or stopwords gets no results (BM25's
honest answer), not k arbitrary zero-score items.

Tokens: lower-cased words of 2+ characters, English stopwords removed, and a minimal plural stemmer (the
rules of Lucene's EnglishMinimalStemmer) so "pillows" meets "pillow" as it would in a stock search engine.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np
import pandas as pd
from bm25s.tokenization import Tokenizer
from rich.progress import Progress

from catalog.io import parse_features

# bm25s pins its logger to DEBUG on import, which floods any app that configures logging: defer to the app.
logging.getLogger("bm25s").setLevel(logging.NOTSET)

K1 = 1.5
B = 0.75


def minimal_stem(word: str) -> str:
    """Lucene EnglishMinimalStemmer: plural -> singular only (ies -> y, es -> e, s -> '') with its guards."""
    n = len(word)
    if n < 3 or not word.endswith("s"):
        return word
    if word[-2] in "us":  # "glass", "status"
        return word
    if word[-2] == "e":
        if n > 3 and word[-3] == "i" and word[-4] not in "ae":  # "flies" -> "fly"
            return word[:-3] + "y"
        if word[-3] in "aeio":  # "shoes", "trees": left alone, as Lucene does
            return word
    return word[:-1]


def product_documents(products: pd.DataFrame) -> list[str]:
    """One text per product (row order): name, class, description and every feature value."""
    out: list[str] = []
    cols = ("product_name", "product_class", "product_description", "product_features")
    for name, cls, desc, feats in zip(*(products[c].tolist() for c in cols), strict=True):
        values = " ".join(v for _, v in parse_features(feats))
        out.append(f"{name} {cls} {desc} {values}")
    return out


@dataclass
class BM25Index:
    retriever: bm25s.BM25
    tokenizer: Tokenizer
    n: int

    @classmethod
    def build(
        cls, documents: Sequence[str], *, k1: float = K1, b: float = B, progress: bool = True
    ) -> BM25Index:
        tokenizer = Tokenizer(stopwords="english", stemmer=minimal_stem)
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("BM25 indexing", total=2)
            ids = tokenizer.tokenize(list(documents), update_vocab=True, return_as="ids", show_progress=False)
            bar.advance(task)
            retriever = bm25s.BM25(k1=k1, b=b)
            retriever.index(ids, show_progress=False)
            bar.advance(task)
        return cls(retriever, tokenizer, len(documents))

    @classmethod
    def from_products(cls, products: pd.DataFrame, *, progress: bool = True) -> BM25Index:
        return cls.build(product_documents(products), progress=progress)

    def _query_ids(self, text: str) -> list[int]:
        # bm25s caches every word it meets in word_to_stem / word_to_id even with update_vocab=False, so the
        # shared tokenizer would grow with each new query word. A shallow copy with empty caches reads the
        # index's stem_to_sid (never written without update_vocab) and gives the same ids.
        tokenizer = copy.copy(self.tokenizer)
        tokenizer.word_to_stem, tokenizer.word_to_id = {}, {}
        ids = tokenizer.tokenize([text], update_vocab=False, return_as="ids", show_progress=False)[0]
        # bm25s maps an empty token to a vocab entry of its own: never let it match.
        empty = self.tokenizer.get_vocab_dict().get("")
        return [i for i in ids if i != empty]

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items per query -> (ids (q, k) int64, scores (q, k) float32), best first."""
        if k < 1:
            raise ValueError("k must be >= 1")
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        kk = min(k, self.n)
        for row, text in enumerate(queries):
            tokens = self._query_ids(text)
            if not tokens:
                continue
            docs, s = self.retriever.retrieve([tokens], k=kk, show_progress=False, n_threads=0)
            hit = s[0] > 0  # zero = no query term in the item
            m = int(hit.sum())
            ids[row, :m] = docs[0][hit]
            scores[row, :m] = s[0][hit]
        return ids, scores

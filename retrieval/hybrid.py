"""Hybrid retrieval: dense (WordLlama + FAISS) and BM25 lists fused by weighted reciprocal rank.

Dense mean-pooled vectors miss exact modifiers ("navy", a collection name) and BM25 misses synonyms
("azure" for "blue"); fusing the two ranked lists by RRF needs no score calibration. Measured on the
val split of the generated catalog (docs/quality.md): recall@100 0.62 (dense) / 0.73 (BM25) -> 0.74,
NDCG@10 0.65 / 0.77 -> 0.77 at ``rrf_k=10, bm25_weight=2`` (tuned on val, never on dev).

Filters hold for both lists: the dense side filters inside FAISS (`ItemIndex`), the BM25 side passes the
same boolean mask as bm25s's ``weight_mask``, so neither over-fetches and drops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from retrieval.bm25 import BM25Index

RRF_K = 10
BM25_WEIGHT = 2.0
# Each list is cut at max(depth_factor * k, k) before fusion: deeper lists only add tail noise.
DEPTH_FACTOR = 2


class VectorSearch(Protocol):
    def search_masked(
        self, query_vectors: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]: ...


def rrf_fuse(
    lists: Sequence[np.ndarray], weights: Sequence[float], k: int, *, rrf_k: float = RRF_K
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse ranked id lists (best first, -1 = padding) -> top-k (ids, scores), padded with -1 / -inf.

    score(item) = Σ_lists weight / (rrf_k + rank), rank starting at 1. Ties keep first-seen order (the
    first list wins), so the result is deterministic.
    """
    if len(lists) != len(weights):
        raise ValueError(f"{len(lists)} lists for {len(weights)} weights")
    ids_all, scores_all = [], []
    for ids, w in zip(lists, weights, strict=True):
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids = ids[ids >= 0]
        ids_all.append(ids)
        scores_all.append(w / (rrf_k + np.arange(1, len(ids) + 1, dtype=np.float64)))
    out_ids = np.full(k, -1, dtype=np.int64)
    out_scores = np.full(k, -np.inf, dtype=np.float32)
    if not ids_all or sum(len(i) for i in ids_all) == 0:
        return out_ids, out_scores
    flat = np.concatenate(ids_all)
    uniq, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    total = np.bincount(inverse, weights=np.concatenate(scores_all), minlength=len(uniq))
    # Sort by score, then by first appearance (stable tie-break).
    order = np.lexsort((first, -total))[:k]
    out_ids[: len(order)] = uniq[order]
    out_scores[: len(order)] = total[order]
    return out_ids, out_scores


def bm25_search_masked(bm25: BM25Index, query: str, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """`BM25Index.search` for one query, restricted to ``mask`` inside bm25s (``weight_mask``).

    Returns the ids of items that share a query term, best first, padded with -1 to length k.
    """
    out = np.full(k, -1, dtype=np.int64)
    tokens = bm25._query_ids(query)
    allowed = bm25.n if mask is None else int(mask.sum())
    if not tokens or allowed == 0:
        return out
    weight_mask = None if mask is None else mask.astype(np.float32)
    # n_threads=0: a plain map. Any n_threads >= 1 makes bm25s start a thread pool per call (measured:
    # ~15% of the server's samples went to creating threads for one-query searches).
    docs, s = bm25.retriever.retrieve([tokens], k=min(k, bm25.n), show_progress=False, n_threads=0,
                                      weight_mask=weight_mask)
    hit = s[0] > 0  # zero = no query term in the item (or masked out)
    found = docs[0][hit][:k]
    out[: len(found)] = found
    return out


@dataclass
class HybridRetriever:
    """`retrieve(query, query_vector, k, filters)` -> (ids (1, k), scores (1, k)) fused by RRF."""

    dense: VectorSearch
    bm25: BM25Index
    rrf_k: float = RRF_K
    bm25_weight: float = BM25_WEIGHT
    depth_factor: int = DEPTH_FACTOR

    def bm25_search(self, query: str, k: int, mask: np.ndarray | None) -> np.ndarray:
        return bm25_search_masked(self.bm25, query, k, mask)

    def retrieve(
        self, query: str, query_vector: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of the items `mask` allows (None: all), as (ids (1, k), scores (1, k))."""
        if k < 1:
            raise ValueError("k must be >= 1")
        depth = max(self.depth_factor * k, k)
        dense_ids, _ = self.dense.search_masked(np.asarray(query_vector, np.float32).reshape(1, -1), depth,
                                                mask)
        if mask is not None and not mask.any():
            return np.full((1, k), -1, np.int64), np.full((1, k), -np.inf, np.float32)
        bm25_ids = self.bm25_search(query, depth, mask)
        ids, scores = rrf_fuse([dense_ids[0], bm25_ids], [1.0, self.bm25_weight], k, rrf_k=self.rrf_k)
        return ids[None, :], scores[None, :]

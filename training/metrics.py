"""Ranking metrics shared by training (model selection), the parity gate and the quality harness.

One NDCG for the whole project: exponential gain ``2**rel - 1``, log2 discount, ties broken by list
order (a stable sort), and an ideal that may come from the query's full judgments.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def ndcg_at_k(
    scores: np.ndarray, rels: np.ndarray, k: int = 10, ideal_rels: np.ndarray | None = None
) -> float:
    """NDCG@k with exponential gains 2**rel - 1 over one query's list; nan if no gain.

    ``ideal_rels`` are the query's full judgments when the list holds only some of them (a served
    candidate list): the ideal is computed from those, so relevant items the list misses count
    against it. Default: the list itself is the whole judged set.
    """
    gains = np.exp2(np.asarray(rels, dtype=np.float64)) - 1.0
    ideal_gains = gains if ideal_rels is None else np.exp2(np.asarray(ideal_rels, dtype=np.float64)) - 1.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(ideal_gains)[::-1][:k]
    idcg = float((ideal * discounts[: len(ideal)]).sum())
    if idcg <= 0:
        return float("nan")
    # Stable sort on -score: ties resolve by list order, deterministically.
    top = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return float((gains[top] * discounts[: len(top)]).sum()) / idcg


def nanmean(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN (a query without relevant judgments has no NDCG); NaN if none."""
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def mean_ndcg(
    judged: pd.DataFrame, scores: np.ndarray, k: int = 10, judged_rels: dict[int, np.ndarray] | None = None
) -> float:
    """Mean NDCG@k over the queries of ``judged`` (rows aligned with ``scores``).

    ``judged_rels``: each query's full judgments (`ndcg_at_k`'s ``ideal_rels``) when ``judged`` holds
    served candidate lists rather than whole judged sets. Queries without relevant judgments are skipped.
    """
    vals = per_query_ndcg(judged, scores, k, judged_rels)
    return float(np.nanmean(vals)) if vals.size else float("nan")


def per_query_ndcg(
    judged: pd.DataFrame, scores: np.ndarray, k: int = 10, judged_rels: dict[int, np.ndarray] | None = None
) -> np.ndarray:
    """NDCG@k of each query of ``judged`` in query_id order (NaN where it has no relevant judgment)."""
    rels = judged["rel"].to_numpy()
    return np.array([
        ndcg_at_k(scores[idx], rels[idx], k,
                  None if judged_rels is None else judged_rels.get(int(qid), np.zeros(0)))
        for qid, idx in judged.groupby("query_id", sort=True).indices.items()
    ], dtype=np.float64)

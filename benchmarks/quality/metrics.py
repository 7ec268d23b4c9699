"""Per-query ranking metrics, diversity and paired significance tests for the quality harness.

Graded qrels: Exact=2, Partial=1 (Irrelevant and unjudged items gain 0).
    ndcg@10      training.metrics.ndcg_at_k, the project's one NDCG (exponential gain 2^rel - 1, log2
                 discount), its ideal from all the query's judgments: the same values as ranx `ndcg_burges@10`
    mrr@10       ranx `mrr@10-l2`: reciprocal rank of the first Exact item only
    recall@100   ranx `recall@100`: share of the Exact + Partial items in the top 100
    diversity@10 mean pairwise (1 - cosine) of the top 10 items' index vectors (ranx has no such metric)
    classes@10   distinct product classes in the top 10
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from training.metrics import nanmean, ndcg_at_k

TOP = 10
# Our label -> ranx metric string, for the metrics ranx computes (NDCG is ours: training.metrics).
RANX_METRICS = {"mrr@10": "mrr@10-l2", "recall@100": "recall@100"}
METRIC_DEFINITIONS = {
    "ndcg@10": "training.metrics.ndcg_at_k, ideal from all judgments (= ranx ndcg_burges@10)",
    **{label: f"ranx {name}" for label, name in RANX_METRICS.items()},
    "diversity@10": "mean pairwise (1 - cosine) of top-10 item index vectors",
    "classes@10": "distinct product classes in the top 10",
    "gains": "Exact=2, Partial=1, Irrelevant/unjudged=0",
}
SIGNIFICANCE_PAIRS = (("rerank_mmr", "bm25"), ("rerank_mmr", "retrieval"), ("rerank", "retrieval"),
                      ("cross_encoder", "retrieval"))

Qrels = Mapping[str, Mapping[str, int]]  # query key -> {item id (str): gain > 0}
RankingsByQuery = Mapping[str, Sequence[int]]  # query key -> item ids, best first


def ranking_from_scores(ids: Sequence[int], scores: Sequence[float]) -> list[int]:
    """Item ids by score, best first; ties keep the input order (a stable sort, never an id order)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [int(ids[i]) for i in order]


def query_ndcg(judgments: Mapping[str, int], ids: Sequence[int], k: int = TOP) -> float:
    """NDCG@k of one ranking as ordered; relevant items it misses count against it (nan if no gain)."""
    rels = np.array([judgments.get(str(int(i)), 0) for i in ids], dtype=np.float64)
    # ndcg_at_k sorts by score: strictly decreasing scores keep the ranking's own order (MMR's included).
    scores = np.arange(len(rels), 0, -1, dtype=np.float64)
    ideal = np.fromiter(judgments.values(), dtype=np.float64, count=len(judgments))
    return ndcg_at_k(scores, rels, k, ideal_rels=ideal)


def to_run(rankings: RankingsByQuery, name: str = "run") -> Any:
    """A ranx Run that keeps each ranking's order exactly.

    ranx re-sorts a run by score, so give strictly decreasing scores by rank: an MMR order is not a
    relevance-score order, and tied scores would be re-ordered by ranx.
    """
    import ranx

    return ranx.Run.from_dict(
        {q: {str(int(i)): float(len(ids) - r) for r, i in enumerate(ids)} for q, ids in rankings.items()},
        name=name,
    )


def ranx_metrics(qrels: Qrels, rankings: RankingsByQuery) -> dict[str, dict[str, float]]:
    """label -> {query key: value} for the RANX_METRICS; a missing ranking scores 0."""
    import ranx

    keys = list(qrels)
    if not any(rankings.get(k) for k in keys):  # ranx cannot build a run with no item at all
        return {label: dict.fromkeys(keys, 0.0) for label in RANX_METRICS}
    q = ranx.Qrels.from_dict({k: dict(qrels[k]) for k in keys})
    run = to_run({k: list(rankings.get(k, [])) for k in keys})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's uint64 -> int64 cast note, harmless here
        scores = ranx.evaluate(q, run, list(RANX_METRICS.values()), return_mean=False, make_comparable=True)
    order = list(q.keys())
    return {label: dict(zip(order, map(float, scores[m]), strict=True)) for label, m in RANX_METRICS.items()}


def relevance_metrics(qrels: Qrels, rankings: RankingsByQuery) -> dict[str, dict[str, float]]:
    """label -> {query key: value} for ndcg@10, mrr@10, recall@100; a missing ranking scores 0."""
    ndcg = {k: query_ndcg(qrels[k], rankings.get(k, [])) for k in qrels}
    return {"ndcg@10": ndcg, **ranx_metrics(qrels, rankings)}


def diversity_at_k(ids: Sequence[int], vectors: np.ndarray, k: int = TOP) -> float:
    """Mean pairwise (1 - cosine) over the top-k items; nan with fewer than two items."""
    top = np.asarray(list(ids[:k]), dtype=np.int64)
    if len(top) < 2:
        return math.nan
    v = np.asarray(vectors[top], dtype=np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    iu = np.triu_indices(len(top), 1)
    return float(np.mean(1.0 - (v @ v.T)[iu]))


def distinct_classes_at_k(ids: Sequence[int], classes: np.ndarray, k: int = TOP) -> int:
    return len({classes[int(i)] for i in ids[:k]})


def system_metrics(
    qrels: Qrels, rankings: RankingsByQuery, vectors: np.ndarray, classes: np.ndarray
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(means, per-query values) of every metric for one system."""
    per_query = relevance_metrics(qrels, rankings)
    per_query["diversity@10"] = {k: diversity_at_k(rankings.get(k, []), vectors) for k in qrels}
    per_query["classes@10"] = {k: float(distinct_classes_at_k(rankings.get(k, []), classes)) for k in qrels}
    means = {label: nanmean(list(values.values())) for label, values in per_query.items()}
    return means, per_query


def lambda_sweep(
    qrels: Qrels, sweep: Mapping[float, RankingsByQuery], vectors: np.ndarray, classes: np.ndarray
) -> list[dict[str, float]]:
    """One row of mean metrics per MMR λ, in λ order."""
    rows = []
    for lam, rankings in sorted(sweep.items()):
        means, _ = system_metrics(qrels, rankings, vectors, classes)
        rows.append({"lambda": lam, "ndcg@10": means["ndcg@10"], "diversity@10": means["diversity@10"],
                     "mrr@10": means["mrr@10"], "classes@10": means["classes@10"]})
    return rows


# ------------------------------------------------------------------------------------------ significance


def paired_t_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired Student's t-test p (scipy's ttest_rel, as ranx's "student" calls it)."""
    from scipy import stats

    if not np.any(a != b):  # t is 0/0 (scipy: nan); no difference at all is no evidence of one
        return 1.0
    return float(stats.ttest_rel(a, b, alternative="two-sided").pvalue)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a - b, axis=axis)


def randomisation_p(a: np.ndarray, b: np.ndarray, permutations: int, seed: int) -> float:
    """Two-sided paired randomisation test p on the mean difference (each query's pair swapped at random).

    scipy counts the observed arrangement and doubles the smaller tail, so p >= 2 / (permutations + 1)
    (ranx's "fisher" could say 0); it enumerates all
    2^queries arrangements (an exact test) when that is no more than `permutations`.
    """
    from scipy import stats

    result = stats.permutation_test(
        (a, b), _mean_difference, permutation_type="samples", vectorized=True, n_resamples=permutations,
        batch=1000,  # bounds memory to 1000 x queries per side, whatever the query count
        alternative="two-sided", rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def significance(
    per_query_ndcg: Mapping[str, Mapping[str, float]],
    pairs: Sequence[tuple[str, str]] = SIGNIFICANCE_PAIRS,
    *,
    permutations: int = 10_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Paired tests of system a against b on per-query NDCG@10 (system -> {query key: ndcg}).

    Every pair uses the same seed, so each p is reproducible on its own.
    """
    out = []
    for a, b in pairs:
        keys = list(per_query_ndcg[a])
        x = np.array([per_query_ndcg[a][k] for k in keys], dtype=np.float64)
        y = np.array([per_query_ndcg[b][k] for k in keys], dtype=np.float64)
        out.append({
            "a": a, "b": b, "metric": "ndcg@10",
            "a_score": float(np.mean(x)), "b_score": float(np.mean(y)),
            "p_student": paired_t_p(x, y),
            "p_randomisation": randomisation_p(x, y, permutations, seed),
            "permutations": permutations,
            "win_tie_loss": {"W": int(np.sum(x > y)), "T": int(np.sum(x == y)), "L": int(np.sum(x < y))},
        })
    return out

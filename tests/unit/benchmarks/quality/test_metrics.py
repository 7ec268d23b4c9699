"""Per-query metrics on hand-made rankings: our NDCG (training.metrics) against ranx, ranx's MRR and
recall, diversity, and the paired significance tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.quality.metrics import (
    distinct_classes_at_k,
    diversity_at_k,
    ranking_from_scores,
    relevance_metrics,
    significance,
    to_run,
)

# One query: items 1 and 3 are Exact (gain 2), item 2 is Partial (gain 1); anything else gains 0.
QRELS = {"q": {"1": 2, "2": 1, "3": 2}}


def dcg(gains: list[int]) -> float:
    """Exponential-gain DCG written out by hand: sum (2^g - 1) / log2(rank + 1)."""
    return sum((2**g - 1) / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


IDCG = dcg([2, 2, 1])


def metrics_of(ranking: list[int]) -> dict[str, float]:
    out = relevance_metrics(QRELS, {"q": ranking})
    return {label: values["q"] for label, values in out.items()}


def test_perfect_ranking_scores_one() -> None:
    m = metrics_of([1, 3, 2, 7, 8])
    assert m["ndcg@10"] == pytest.approx(1.0)
    assert m["mrr@10"] == pytest.approx(1.0)
    assert m["recall@100"] == pytest.approx(1.0)


def test_reversed_ranking() -> None:
    # Worst order of the three judged items behind two unjudged ones: [unjudged, unjudged, P, E, E].
    m = metrics_of([8, 7, 2, 3, 1])
    assert m["ndcg@10"] == pytest.approx(dcg([0, 0, 1, 2, 2]) / IDCG)
    assert m["ndcg@10"] == pytest.approx(0.5475, abs=1e-4)  # the same number, worked out on paper
    # MRR counts Exact only: the Partial at rank 3 does not count, the first Exact is at rank 4.
    assert m["mrr@10"] == pytest.approx(1 / 4)
    assert m["recall@100"] == pytest.approx(1.0)


def test_tied_grades_and_tied_scores() -> None:
    # Swapping two Exact items (tied grades) leaves a perfect ranking perfect.
    assert metrics_of([3, 1, 2])["ndcg@10"] == pytest.approx(1.0)
    # Tied scores keep the input order (stable), so 5 (unjudged) stays ahead of 1 (Exact).
    ranking = ranking_from_scores([5, 1, 2], [0.9, 0.9, 0.4])
    assert ranking == [5, 1, 2]
    m = metrics_of(ranking)
    assert m["ndcg@10"] == pytest.approx(dcg([0, 2, 1]) / IDCG)
    assert m["mrr@10"] == pytest.approx(1 / 2)
    assert m["recall@100"] == pytest.approx(2 / 3)


def test_cutoffs_and_empty_ranking() -> None:
    # Exact 1 at rank 11 is beyond NDCG@10 and MRR@10; Partial 2 at rank 100 counts for recall@100,
    # Exact 3 at rank 101 does not.
    ranking = [100 + i for i in range(10)] + [1] + [200 + i for i in range(88)] + [2, 3]
    assert ranking.index(2) + 1 == 100 and len(ranking) == 101
    m = metrics_of(ranking)
    assert m["ndcg@10"] == 0.0
    assert m["mrr@10"] == 0.0
    assert m["recall@100"] == pytest.approx(2 / 3)
    empty = relevance_metrics(QRELS, {})
    assert all(values["q"] == 0.0 for values in empty.values())


def test_ndcg_equals_ranx_ndcg_burges() -> None:
    """Our NDCG@10 (training.metrics.ndcg_at_k, ideal from all judgments) is ranx's ndcg_burges@10."""
    import ranx

    # Ties in the judgments (three Exact, two Partial), and unjudged items (>= 100) in the rankings.
    judged = {"1": 2, "2": 2, "3": 2, "4": 1, "5": 1}
    rankings = {
        "perfect": [3, 1, 2, 5, 4],
        "tied_grades_swapped": [2, 3, 1, 4, 5, 100],
        "unjudged_first": [100, 101, 4, 1, 102, 2],
        "misses_relevant": [5, 100, 3],  # the ideal still counts 1, 2 and 4
        "only_unjudged": [100, 101, 102],
        "beyond_cutoff": [*range(100, 110), 1, 2, 3],
        "long_mixed": [100, 1, 101, 4, 102, 2, 103, 104, 5, 105, 3, 106],
        "single_partial": [4],
    }
    qrels = {q: judged for q in rankings}
    ours = relevance_metrics(qrels, rankings)["ndcg@10"]
    ranx_qrels = ranx.Qrels.from_dict({q: dict(judged) for q in rankings})
    theirs = ranx.evaluate(ranx_qrels, to_run(rankings), "ndcg_burges@10", return_mean=False,
                           make_comparable=True)  # per query, in ranx's (sorted) query order
    assert ours == pytest.approx(dict(zip(ranx_qrels.keys(), map(float, theirs), strict=True)), abs=1e-12)
    assert ours["perfect"] == pytest.approx(1.0) and ours["tied_grades_swapped"] == pytest.approx(1.0)
    assert ours["only_unjudged"] == 0.0 and ours["beyond_cutoff"] == 0.0


def test_diversity_and_classes() -> None:
    vectors = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    assert diversity_at_k([0, 1], vectors) == pytest.approx(0.0)
    assert diversity_at_k([0, 2, 3], vectors) == pytest.approx(1.0)
    # Pairs (0,1)=0, (0,2)=1, (1,2)=1 -> mean 2/3.
    assert diversity_at_k([0, 1, 2], vectors) == pytest.approx(2 / 3)
    assert math.isnan(diversity_at_k([0], vectors))
    # Only the top k count.
    assert diversity_at_k([0, 1, 2, 3], vectors, k=2) == pytest.approx(0.0)
    classes = np.array(["Sofas", "Sofas", "Rugs", "Lamps"], dtype=object)
    assert distinct_classes_at_k([0, 1, 2, 3], classes) == 3
    assert distinct_classes_at_k([0, 1, 2, 3], classes, k=2) == 1


def test_significance_identical_and_clearly_better() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.7, size=40)
    keys = [str(i) for i in range(40)]
    per_query = {
        "a": dict(zip(keys, base, strict=True)),
        "same": dict(zip(keys, base, strict=True)),
        "better": dict(zip(keys, base + 0.2 + rng.normal(0, 0.02, size=40), strict=True)),
    }
    same, better = significance(per_query, [("a", "same"), ("better", "a")], permutations=2000, seed=0)
    # Identical runs: no difference is no evidence of one (scipy's t alone would give nan).
    assert same["p_student"] == 1.0 and same["p_randomisation"] == 1.0
    assert same["win_tie_loss"] == {"W": 0, "T": 40, "L": 0}
    assert same["a_score"] == same["b_score"]
    assert better["p_student"] < 1e-10
    # No arrangement as extreme: two-sided, the observed one counted, p = 2 / (permutations + 1).
    assert better["p_randomisation"] == pytest.approx(2 / 2001)
    assert better["win_tie_loss"] == {"W": 40, "T": 0, "L": 0}
    assert better["a_score"] > better["b_score"] and better["permutations"] == 2000
    # Same seed, same p.
    again = significance(per_query, [("better", "a")], permutations=2000, seed=0)[0]
    assert again["p_randomisation"] == better["p_randomisation"]


def test_randomisation_exact_and_student_matches_ranx() -> None:
    import ranx

    # Three queries, 2^3 = 8 sign arrangements <= permutations: scipy enumerates them (an exact test).
    # Every difference positive: only all-plus and all-minus are as extreme, p = 2 / 8.
    exact = significance({"a": {"x": 0.5, "y": 0.6, "z": 0.7}, "b": {"x": 0.4, "y": 0.4, "z": 0.4}},
                         [("a", "b")], permutations=100)[0]
    assert exact["p_randomisation"] == pytest.approx(2 / 8)

    # p_student is ranx's "student" p on the same rankings.
    judged = {"1": 2, "2": 1, "3": 2}
    rng = np.random.default_rng(3)
    runs = {name: {str(q): [int(i) for i in rng.permutation(12) + 1] for q in range(25)} for name in "ab"}
    qrels = {q: judged for q in runs["a"]}
    per_query = {name: relevance_metrics(qrels, r)["ndcg@10"] for name, r in runs.items()}
    ours = significance(per_query, [("a", "b")], permutations=500)[0]
    q = ranx.Qrels.from_dict({k: dict(judged) for k in qrels})
    report = ranx.compare(q, [to_run(runs[n], name=n) for n in "ab"], ["ndcg_burges@10"],
                          stat_test="student", make_comparable=True).to_dict()
    assert ours["p_student"] == pytest.approx(report["a"]["comparisons"]["b"]["ndcg_burges@10"], rel=1e-9)
    assert ours["win_tie_loss"] == report["a"]["win_tie_loss"]["b"]["ndcg_burges@10"]

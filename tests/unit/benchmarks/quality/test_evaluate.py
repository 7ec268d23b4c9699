"""The eval harness: ranx metrics on hand-made rankings, query selection, BM25, `rankserve eval` end to end.

(That training never reads a dev query is asserted from the training data in tests/test_reranker_model.py.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from benchmarks.quality.evaluate import (
    LAMBDAS,
    SYSTEMS,
    distinct_classes_at_k,
    diversity_at_k,
    ranking_from_scores,
    relevance_metrics,
    select_queries,
)
from retrieval.bm25 import BM25Index, minimal_stem

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


def test_select_queries_matching_and_skips() -> None:
    catalog_queries = pd.DataFrame({
        "query_id": [10, 11, 12],
        "query": ["navy sofa", "Marble", "desk lamp"],
        "query_class": ["Sofas", "End Tables", "Desk Lamps"],
    })
    labels = pd.DataFrame({
        "id": range(5),
        "query_id": [10, 10, 11, 12, 12],
        "product_id": [1, 2, 3, 4, 5],
        "label": ["Exact", "Partial", "Exact", "Irrelevant", "Irrelevant"],
    })
    file_queries = pd.DataFrame({
        "query_id": [10, 99, 12, 10, 50],
        # 99 matches catalog 11 by text + class (case and spacing ignored); 12 has no Exact/Partial label;
        # the repeated 10 is scored once; 50 is in no catalog row.
        "query": ["navy sofa", " marble ", "desk lamp", "navy sofa", "purple unicorn"],
        "query_class": ["Sofas", "end tables", "Desk Lamps", "Sofas", "Toys"],
    })
    sel = select_queries(file_queries, catalog_queries, labels, split="all")
    assert sel.queries["key"].tolist() == ["10", "99"]
    assert sel.queries["query_id"].tolist() == [10, 11]
    assert sel.qrels == {"10": {"1": 2, "2": 1}, "99": {"3": 2}}
    assert sel.skipped == {"duplicate_query_id": [10], "not_in_catalog": [50], "no_relevant_labels": [12]}
    assert sel.skipped_count == 3
    with pytest.raises(ValueError):
        select_queries(file_queries, catalog_queries, labels, split="test")


def test_select_queries_split(shared_queries: Path) -> None:
    from catalog.io import read_queries
    from training.splits import split_labels

    queries = read_queries(shared_queries)
    labels = pd.DataFrame({"id": range(len(queries)), "query_id": queries["query_id"],
                           "product_id": 0, "label": "Exact"})
    dev = select_queries(queries, queries, labels, split="dev")
    expected = queries.drop_duplicates("query_id")
    expected = expected[split_labels(expected) == "dev"]
    assert 0 < len(dev.queries) < len(queries)
    assert set(dev.queries["query_id"]) == set(expected["query_id"])
    assert set(dev.queries["split"]) == {"dev"}


def test_bm25_search() -> None:
    assert [minimal_stem(w) for w in ("pillows", "glass", "flies", "shoes", "rugs")] == [
        "pillow", "glass", "fly", "shoes", "rug"]
    docs = ["Navy velvet sofa", "Turquoise accent pillow", "Oak dining chair",
            "Navy accent pillows and throws"]
    index = BM25Index.build(docs, progress=False)
    ids, scores = index.search(["turquoise pillows", "the and of", "zorblax"], k=3)
    assert ids.shape == scores.shape == (3, 3)
    assert ids[0, 0] == 1  # plural query meets the singular title, and "turquoise" outranks
    assert set(ids[0][ids[0] >= 0]) == {1, 3}  # only items sharing a term come back
    assert ids[0, 2] == -1 and scores[0, 2] == -np.inf
    assert (ids[1] == -1).all() and (ids[2] == -1).all()  # stopwords only / unknown word: nothing
    assert np.all(np.diff(scores[0][ids[0] >= 0]) <= 0)


def test_eval_end_to_end(artifacts, tmp_path: Path) -> None:
    from cli.main import app

    src = pd.read_csv(artifacts.queries, sep="\t", dtype=str, keep_default_na=False)
    subset = src.head(12)
    extra = pd.DataFrame({"query_id": ["900001", subset["query_id"].iloc[0]],
                          "query": ["purple unicorn lamp shade", subset["query"].iloc[0]],
                          "query_class": ["Unicorn Things", subset["query_class"].iloc[0]]})
    queries = tmp_path / "query.csv"
    pd.concat([subset, extra]).to_csv(queries, sep="\t", index=False)
    out, plot = tmp_path / "eval.json", tmp_path / "lambda.png"

    args = ["eval", "--catalog", str(artifacts.catalog), "--queries", str(queries),
            "--model", str(artifacts.model), "--json", str(out), "--plot", str(plot), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads(out.read_text())
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert report["queries"] == 12
    assert report["generated_catalog"] is True
    assert report["split"] == "all"
    assert report["skipped_queries"]["count"] == 2
    assert report["skipped_queries"]["by_reason"]["not_in_catalog"] == [900001]
    assert report["skipped_queries"]["by_reason"]["duplicate_query_id"] == [int(subset["query_id"].iloc[0])]
    assert set(report["systems"]) == set(SYSTEMS)
    for name in (*SYSTEMS, "rerank_fp32"):
        m = report["systems"].get(name) or report["rerank_fp32"]
        for key in ("ndcg@10", "mrr@10", "recall@100", "diversity@10"):
            assert 0.0 <= m[key] <= 1.0, (name, key, m[key])
    s = report["systems"]
    # retrieval, rerank and rerank_mmr order the same 100 candidates: identical recall@100.
    assert s["retrieval"]["recall@100"] == pytest.approx(s["rerank"]["recall@100"])
    assert s["rerank"]["recall@100"] == pytest.approx(s["rerank_mmr"]["recall@100"])
    # One Triton call per query: rerank, the λ sweep and rerank_mmr share cached scores.
    assert report["reranker_calls"]["triton"] == 12

    sweep = report["lambda_sweep"]
    assert [r["lambda"] for r in sweep] == pytest.approx(sorted({*LAMBDAS, report["default_lambda"]}))
    by_lambda = {r["lambda"]: r for r in sweep}
    assert by_lambda[1.0]["ndcg@10"] == pytest.approx(s["rerank"]["ndcg@10"])
    default = by_lambda[report["default_lambda"]]
    assert default["ndcg@10"] == pytest.approx(s["rerank_mmr"]["ndcg@10"])
    assert default["diversity@10"] == pytest.approx(s["rerank_mmr"]["diversity@10"])
    assert all(0.0 <= r["ndcg@10"] <= 1.0 and 0.0 <= r["diversity@10"] <= 1.0 for r in sweep)

    pairs = {(r["a"], r["b"]) for r in report["significance"]}
    assert pairs == {("rerank_mmr", "bm25"), ("rerank_mmr", "retrieval"), ("rerank", "retrieval")}
    for r in report["significance"]:
        assert 0.0 <= r["p_student"] <= 1.0 and 0.0 <= r["p_randomisation"] <= 1.0
    assert abs(report["rerank_fp32"]["int8_minus_fp32_ndcg@10"]) <= 1.0
    assert len(report["per_query"]) == 12

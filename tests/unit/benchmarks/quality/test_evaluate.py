"""`rankserve eval` end to end on small built artifacts: the report's shape and its internal consistency.

(That training never reads a dev query is asserted from the training data in
tests/unit/training/test_augment.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from benchmarks.quality.runs import LAMBDAS, SYSTEMS


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
    # retrieval, cross_encoder, rerank and rerank_mmr order the same 100 candidates: identical recall@100.
    assert s["retrieval"]["recall@100"] == pytest.approx(s["rerank"]["recall@100"])
    assert s["cross_encoder"]["recall@100"] == pytest.approx(s["rerank"]["recall@100"])
    assert s["rerank"]["recall@100"] == pytest.approx(s["rerank_mmr"]["recall@100"])
    # One Triton call per query: cross_encoder, rerank, the λ sweep and rerank_mmr share cached scores.
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
    assert pairs == {("rerank_mmr", "bm25"), ("rerank_mmr", "retrieval"), ("rerank", "retrieval"),
                     ("cross_encoder", "retrieval")}
    for r in report["significance"]:
        assert 0.0 <= r["p_student"] <= 1.0 and 0.0 <= r["p_randomisation"] <= 1.0
    assert abs(report["rerank_fp32"]["int8_minus_fp32_ndcg@10"]) <= 1.0
    assert len(report["per_query"]) == 12

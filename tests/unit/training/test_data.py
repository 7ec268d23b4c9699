"""The trainer's data: gradient steps read train-split judgments only."""

from __future__ import annotations

import numpy as np

from tests.unit.training.conftest import load_queries, synthetic_data
from training.data import training_judgments
from training.splits import split_queries


def test_dev_never_read_by_training() -> None:
    queries = load_queries()
    data = synthetic_data(queries, per_query=5)
    splits = split_queries(queries)
    read = training_judgments(data)
    assert set(read["query_id"]) == set(splits["train"]["query_id"])
    assert not set(read["query"]) & set(splits["dev"]["query"])
    assert not set(read["query_id"]) & (set(splits["dev"]["query_id"]) | set(splits["val"]["query_id"]))


def test_negatives_of_classes_no_train_query_wants_are_read_only_when_asked() -> None:
    data = synthetic_data(load_queries(), per_query=10)
    every = training_judgments(data, all_class_negatives=True)
    default = training_judgments(data)
    cls = data.product_class
    wanted = set(cls[every.loc[every["rel"] > 0, "product_id"].to_numpy()])
    assert set(cls[default["product_id"].to_numpy()]) <= wanted
    extra = every[~np.isin(cls[every["product_id"].to_numpy()], list(wanted))]
    # The synthetic Irrelevant items are drawn from every class, dev classes included.
    assert len(extra) and (extra["rel"] == 0).all()
    assert len(every) == len(default) + len(extra)
    assert set(every["query_id"]) == set(default["query_id"])  # the rule drops rows, never a query

"""The trainer's data: gradient steps read train-split judgments only."""

from __future__ import annotations

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

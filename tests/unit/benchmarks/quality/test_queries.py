"""Query selection: which --queries rows are scored, against which catalog query, and the skipped ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmarks.quality.queries import select_queries


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

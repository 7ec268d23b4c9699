"""The project's one NDCG: graded gains, and the full-judgment ideal for served candidate lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.metrics import mean_ndcg, ndcg_at_k, per_query_ndcg


def test_ndcg_graded() -> None:
    rels = np.array([0, 1, 2])
    assert ndcg_at_k(np.array([0.0, 1.0, 2.0]), rels) == pytest.approx(1.0)
    assert ndcg_at_k(np.array([2.0, 1.0, 0.0]), rels) < ndcg_at_k(np.array([1.0, 2.0, 0.0]), rels) < 1.0
    assert np.isnan(ndcg_at_k(np.array([1.0, 2.0]), np.array([0, 0])))


def test_served_ndcg_uses_full_judgment_ideal() -> None:
    # Query 1 retrieved an Exact and an Irrelevant item, but has a second Exact the list missed.
    lists = pd.DataFrame(
        {"query_id": [1, 1, 2, 2], "query": ["a", "a", "b", "b"], "product_id": [10, 11, 20, 21],
         "rel": [0, 2, 1, 0]}
    )
    ideal_1 = 3.0 + 3.0 / np.log2(3)  # two Exact items (gain 3) at ranks 1 and 2
    judged = {1: np.array([2, 2, 0]), 2: np.array([1, 0])}  # query 1's second Exact was not retrieved
    good = np.array([0.0, 1.0, 1.0, 0.0])  # relevant first in both lists
    bad = -good
    assert mean_ndcg(lists, good, judged_rels=judged) == pytest.approx((3.0 / ideal_1 + 1.0) / 2)
    assert mean_ndcg(lists, bad, judged_rels=judged) == pytest.approx(
        (3.0 / np.log2(3) / ideal_1 + 1.0 / np.log2(3)) / 2
    )
    # A query with nothing relevant judged is skipped, not scored 0.
    nothing = {1: judged[1], 2: np.array([0, 0])}
    assert mean_ndcg(lists, good, judged_rels=nothing) == pytest.approx(3.0 / ideal_1)


def test_per_query_ndcg_is_what_the_mean_averages() -> None:
    judged = pd.DataFrame({"query_id": [2, 2, 1, 1, 3], "rel": [0, 2, 1, 0, 0]})
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.5])
    per = per_query_ndcg(judged, scores)
    assert per[0] == pytest.approx(1.0)  # query 1: its relevant item first
    assert per[1] < 1.0  # query 2: its relevant item second
    assert np.isnan(per[2])  # query 3: nothing relevant
    assert mean_ndcg(judged, scores) == pytest.approx(np.nanmean(per))

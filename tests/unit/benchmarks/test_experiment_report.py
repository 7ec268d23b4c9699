"""`rankserve report`'s arithmetic: Wilson intervals, the two-proportion test, and events counted to the
arm their user hashes to."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.experiment_report import arm_report, merge, ndcg_report, two_proportion_p, wilson
from catalog.io import Catalog
from feedback.events import Event, EventType
from pipeline.experiments import Experiments


def test_wilson_interval_and_two_proportion_test() -> None:
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and 0 < wilson(0, 10)[1] < 0.35
    assert all(math.isnan(x) for x in wilson(0, 0))
    assert two_proportion_p(50, 100, 50, 100) == pytest.approx(1.0)
    assert two_proportion_p(60, 100, 40, 100) == pytest.approx(0.0047, abs=5e-4)  # z = 2.83
    assert math.isnan(two_proportion_p(1, 0, 1, 10))


def test_events_count_to_the_arm_of_their_user(tmp_path: Path) -> None:
    spec = tmp_path / "e.yaml"
    spec.write_text("experiments:\n  - name: x\n    arms: [{name: a, share: 0.5}, {name: b, share: 0.5}]\n")
    exp = Experiments.load(spec)
    users = {exp.assign(f"u{i}", "").variant: f"u{i}" for i in range(20)}
    ua, ub = users["x/a"], users["x/b"]
    events = []
    for user, clicks in ((ua, 2), (ub, 6)):
        events += [Event(f"{user}-i{k}", "r", user, 1, EventType.IMPRESSION, 1, 0) for k in range(20)]
        events += [Event(f"{user}-c{k}", "r", user, 1, EventType.CLICK, 1, 0) for k in range(clicks)]
    events.append(Event("p", "r", ub, 1, EventType.PURCHASE, 1, 0))
    rep = arm_report(exp, events)["x"]
    assert rep["control"] == "a"
    a, b = rep["arms"]["a"], rep["arms"]["b"]
    assert (a["ctr"]["value"], b["ctr"]["value"]) == (0.1, 0.3)
    assert b["cvr"]["successes"] == 1 and b["cvr"]["trials"] == 6
    assert "vs_control" not in a and 0 < b["vs_control"]["ctr_p"] < 0.2


def test_ndcg_per_arm_is_paired_over_the_judged_queries(tmp_path: Path) -> None:
    """Arm a ranks each query's Exact item first, arm b second or third: a's NDCG is 1, b's difference
    is negative for every query and the paired test says so; the probe users hash into their arms."""
    spec = tmp_path / "e.yaml"
    spec.write_text("experiments:\n  - name: x\n    arms: [{name: a, share: 0.5}, {name: b, share: 0.5}]\n")
    exp = Experiments.load(spec)
    n = 12
    labels = pd.DataFrame({"id": range(2 * n), "query_id": np.repeat(np.arange(n), 2),
                           "product_id": np.arange(2 * n), "label": ["Exact", "Irrelevant"] * n})
    queries = pd.DataFrame({"query_id": np.arange(n), "query": [f"q{i}" for i in range(n)]})
    catalog = Catalog(tmp_path, pd.DataFrame(), queries, labels, {})
    arm_of: dict[str, str] = {}

    def rank(query: str, user: str) -> list[int]:
        arm = exp.assign(user, "").variant.split("/")[1]
        arm_of[user] = arm
        q = int(query[1:])
        best, other = 2 * q, 2 * q + 1
        if arm == "a":
            return [best, other, 10_000 + q]
        return [other, best, 10_000 + q] if q % 2 == 0 else [10_000 + q, other, best]

    rep = ndcg_report(exp, catalog, rank)["x"]
    assert sorted(arm_of.values()) == ["a", "b"]  # one probe user per arm, each in its own arm
    a, b = rep["arms"]["a"], rep["arms"]["b"]
    assert a["ndcg@10"]["value"] == pytest.approx(1.0) and a["ndcg@10"]["queries"] == n
    expected = (1 / np.log2(3) + 1 / np.log2(4)) / 2  # the Exact item at rank 2 or 3
    assert b["ndcg@10"]["value"] == pytest.approx(expected)
    low, high = b["ndcg@10"]["ci95"]
    assert low < expected < high
    diff = b["vs_control"]["ndcg@10_difference"]
    assert diff["value"] == pytest.approx(expected - 1) and diff["queries"] == n
    assert b["vs_control"]["paired_t_p"] < 1e-6
    merged = merge(arm_report(exp, []), {"x": rep})["x"]["arms"]["b"]
    assert {"ctr", "cvr", "ndcg@10"} <= set(merged) and {"ctr_p", "ndcg@10_difference"} <= set(
        merged["vs_control"])

"""`rankserve report`'s arithmetic: Wilson intervals, the two-proportion test, and events counted to the
arm their user hashes to."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.experiment_report import arm_report, two_proportion_p, wilson
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

"""`rankserve report`: per experiment arm, CTR and CVR from the feedback log, with 95% Wilson intervals
and a two-proportion z-test of every arm against its experiment's first arm (the control).

An event belongs to the arm its user (or, without a user, its request) hashes to, the same assignment
the server made when it served the list (`pipeline.experiments`). CTR = clicks / impressions, CVR =
purchases / clicks.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from scipy.stats import norm

from feedback.events import Event, EventType
from pipeline.experiments import Experiments

Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (nan, nan without trials)."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    denom = 1 + z * z / trials
    return (centre - spread) / denom, (centre + spread) / denom


def two_proportion_p(s1: int, n1: int, s2: int, n2: int) -> float:
    """Two-sided p-value of a pooled two-proportion z-test (nan when it is undefined)."""
    if n1 == 0 or n2 == 0:
        return float("nan")
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return float("nan")
    return float(2 * norm.sf(abs(s1 / n1 - s2 / n2) / se))


def _rate(successes: int, trials: int) -> dict:
    low, high = wilson(successes, trials)
    return {"value": successes / trials if trials else float("nan"), "ci95": [low, high],
            "successes": successes, "trials": trials}


def arm_report(experiments: Experiments, events: Iterable[Event]) -> dict:
    """{experiment: {arm: {ctr, cvr, vs_control}}} from the log's events."""
    counts: dict[tuple[str, str], Counter[EventType]] = {}
    for e in events:
        for exp in experiments.experiments:
            arm = exp.assign(e.user_id or e.request_id).name
            counts.setdefault((exp.name, arm), Counter())[e.type] += 1
    out: dict = {}
    for exp in experiments.experiments:
        arms: dict = {}
        control = counts.get((exp.name, exp.arms[0].name), Counter())
        for arm in exp.arms:
            c = counts.get((exp.name, arm.name), Counter())
            shown, clicks, buys = c[EventType.IMPRESSION], c[EventType.CLICK], c[EventType.PURCHASE]
            row = {"share": arm.share, "ctr": _rate(clicks, shown), "cvr": _rate(buys, clicks)}
            if arm is not exp.arms[0]:
                row["vs_control"] = {
                    "ctr_p": two_proportion_p(clicks, shown, control[EventType.CLICK],
                                              control[EventType.IMPRESSION]),
                    "cvr_p": two_proportion_p(buys, clicks, control[EventType.PURCHASE],
                                              control[EventType.CLICK]),
                }
            arms[arm.name] = row
        out[exp.name] = {"control": exp.arms[0].name, "arms": arms}
    return out

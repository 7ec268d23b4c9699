"""`rankserve report`: per experiment arm, CTR and CVR from the feedback log, with 95% Wilson intervals
and a two-proportion z-test of every arm against its experiment's first arm (the control); and, given a
running server, NDCG@10 on the catalog's judgments per arm with a 95% interval and a paired test.

An event belongs to the arm its user (or, without a user, its request) hashes to, the same assignment
the server made when it served the list (`pipeline.experiments`). CTR = clicks / impressions, CVR =
purchases / clicks.

NDCG per arm asks the server itself: every judged query is ranked once per arm as a probe user whose id
hashes into that arm (and who has no history, so nothing personal changes the list): the arm's model
version, λ and candidates, exactly as served. Arms are compared query by query (paired t-test on the
per-query NDCG differences), which removes the spread between queries from the comparison.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy.stats import norm, t, ttest_rel

from catalog.io import LABEL_GAIN, Catalog
from feedback.events import Event, EventType
from pipeline.experiments import Arm, Experiment, Experiments
from server.client import Connection
from training.metrics import ndcg_at_k

# Ranks one query as one user: (query, user_id) -> the served item ids, best first.
RankFn = Callable[[str, str], list[int]]

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


def probe_user(exp: Experiment, arm: Arm, others: Sequence[Experiment] = ()) -> str:
    """The first ``report-probe-<experiment>-<arm>-<n>`` user id that hashes into ``arm`` and into the
    control arm of every other experiment (layers hash independently: a probe in another layer's
    treatment would credit that layer's change to this one)."""
    n = 0
    while True:
        user = f"report-probe-{exp.name}-{arm.name}-{n}"
        if exp.assign(user) is arm and all(o.assign(user) is o.arms[0] for o in others):
            return user
        n += 1


def _mean_ci(values: np.ndarray) -> dict:
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    half = float(t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"value": mean, "ci95": [mean - half, mean + half], "queries": n}


def ndcg_report(experiments: Experiments, catalog: Catalog, rank: RankFn, k: int = 10) -> dict:
    """{experiment: {arm: {ndcg@k, vs_control}}}: each judged query ranked once per arm by ``rank``."""
    gains = catalog.labels.assign(rel=catalog.labels["label"].map(LABEL_GAIN).fillna(0))
    judged = {int(q): dict(zip(g["product_id"].astype(int), g["rel"], strict=True))
              for q, g in gains.groupby("query_id")}
    queries = [(int(q), text) for q, text in zip(catalog.queries["query_id"], catalog.queries["query"],
                                                 strict=True) if int(q) in judged]
    out: dict = {}
    for exp in experiments.experiments:
        per_arm: dict[str, np.ndarray] = {}
        for arm in exp.arms:
            user = probe_user(exp, arm, [o for o in experiments.experiments if o is not exp])
            scores = []
            for qid, text in queries:
                served = rank(text, user)
                rels = np.array([judged[qid].get(i, 0.0) for i in served])
                scores.append(ndcg_at_k(-np.arange(len(served), dtype=np.float64), rels, k,
                                        ideal_rels=np.array(list(judged[qid].values()))))
            per_arm[arm.name] = np.array(scores)
        control = per_arm[exp.arms[0].name]
        arms: dict = {}
        for arm in exp.arms:
            mine = per_arm[arm.name]
            row: dict = {f"ndcg@{k}": _mean_ci(mine[np.isfinite(mine)])}
            if arm is not exp.arms[0]:
                both = np.isfinite(mine) & np.isfinite(control)
                diff = mine[both] - control[both]
                p = float(ttest_rel(mine[both], control[both]).pvalue) if both.sum() > 1 and diff.any() \
                    else float("nan")
                row["vs_control"] = {f"ndcg@{k}_difference": _mean_ci(diff), "paired_t_p": p}
            arms[arm.name] = row
        out[exp.name] = {"control": exp.arms[0].name, "arms": arms}
    return out


def merge(ctr: dict, ndcg: dict) -> dict:
    """One report: each arm's CTR/CVR beside its NDCG (and each vs_control beside the other)."""
    out = {name: {"control": e["control"], "arms": {a: dict(row) for a, row in e["arms"].items()}}
           for name, e in ctr.items()}
    for name, e in ndcg.items():
        for arm, row in e["arms"].items():
            mine = out[name]["arms"][arm]
            for key, value in row.items():
                mine[key] = {**mine.get(key, {}), **value} if key == "vs_control" else value
    return out


def ndcg_from_server(experiments: Experiments, conn: Connection, catalog_dir: Path, k: int = 10) -> dict:
    """`ndcg_report` with the server ``conn`` reaches ranking (TLS and token as it says; one query at a
    time)."""
    from catalog.io import load_catalog
    from protos.ranking.v1 import ranking_pb2, ranking_pb2_grpc
    from server.client import rank_request

    catalog = load_catalog(catalog_dir)
    with conn.sync_channel() as channel:
        stub = ranking_pb2_grpc.RankerStub(channel)

        def rank(query: str, user: str) -> list[int]:
            request = rank_request(query, k=k, user=ranking_pb2.UserContext(user_id=user))
            return [m.item.item_id for m in stub.Rank(request, timeout=60, metadata=conn.metadata())
                    if m.HasField("item")]

        return ndcg_report(experiments, catalog, rank, k)

"""`rankserve simulate`: simulated shoppers (`benchmarks.simulation.world`) drive real servers over gRPC
(Rank, then Feedback with impressions, clicks and purchases), comparing three arms:

- ``static``: requests without a user (today's ranking);
- ``profile``: with the user's id, on a server whose bandit is off (a fixed personal weight);
- ``profile_bandit``: with the user's id, on a server whose bandit picks the weight per list.

Every arm sees the same users, queries and random draws at each step (common random numbers), so the
arms differ only by what they showed. Without ``--target`` two demo servers are started on loopback
(bandit off / on, each with a fresh state directory) and stopped afterwards; with ``--target`` the
static arm and the target's own personalisation mode (`Info.personalization`) run against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np
from rich.progress import Progress

from benchmarks.simulation.world import User, World
from catalog.io import load_catalog
from protos.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from server.client import rank_request
from training.metrics import nanmean, ndcg_at_k

ARMS = ("static", "profile", "profile_bandit")
LAST_SHARE = 0.2  # the summary's window: the last 20% of steps
BOOTSTRAP = 2000  # resamples of the window's steps for the CTR ratio's interval
MIN_STATIC_CLICKS = 10  # fewer static clicks in the window: no ratio and no interval


@dataclass(frozen=True)
class SimConfig:
    users: int = 100
    steps: int = 1000
    seed: int = 0
    k: int = 10
    cold_queries: int = 40  # queries ranked for users without history, against the same without a user


@dataclass
class ArmTrace:
    clicks: list[int]
    purchases: list[int]
    shown: list[int]
    ndcg_pref: list[float]
    personalized: list[int]


class Arm:
    def __init__(self, name: str, stub: ranking_pb2_grpc.RankerStub | None) -> None:
        self.name, self.stub = name, stub
        self.trace = ArmTrace([], [], [], [], [])

    async def ranked(self, world: World, user: User, qid: int, text: str, k: int, user_id: str,
                     request_id: str) -> tuple[np.ndarray, bool]:
        assert self.stub is not None
        context = None if self.name == "static" else ranking_pb2.UserContext(user_id=user_id)
        return await ranked_ids(self.stub, text, k, context, request_id)

    async def step(self, world: World, user: User, step: int, query: tuple[int, str], k: int,
                   u: np.ndarray) -> None:
        qid, text = query
        user_id = f"{self.name}-{user.index}"
        request_id = f"sim-{self.name}-{step}"
        items, personalized = await self.ranked(world, user, qid, text, k, user_id, request_id)
        clicked, bought = world.interact(user, qid, items, u[:, : len(items)])
        self._record(world, user, qid, items, clicked, bought, personalized)
        if self.stub is None:
            return
        events = []
        for pos, item in enumerate(items.tolist(), start=1):
            kinds = [ranking_pb2.EVENT_TYPE_IMPRESSION,
                     *[ranking_pb2.EVENT_TYPE_CLICK] * bool(clicked[pos - 1]),
                     *[ranking_pb2.EVENT_TYPE_PURCHASE] * bool(bought[pos - 1])]
            events += [ranking_pb2.FeedbackEvent(event_id=f"{request_id}-{pos}-{kind}", request_id=request_id,
                                                 user_id=user_id, item_id=item, type=kind, position=pos)
                       for kind in kinds]
        await self.stub.Feedback(iter(events), timeout=30)

    def _record(self, world: World, user: User, qid: int, items: np.ndarray, clicked: np.ndarray,
                bought: np.ndarray, personalized: bool) -> None:
        t = self.trace
        t.clicks.append(int(clicked.sum()))
        t.purchases.append(int(bought.sum()))
        t.shown.append(len(items))
        t.ndcg_pref.append(world.ndcg_pref(user, qid, items))
        t.personalized.append(int(personalized))


class Ceiling(Arm):
    """No server: the query's judged items in the order the user's hidden taste prefers
    (`World.ideal`). What any ranker could reach from the judged items, with the same random draws."""

    def __init__(self) -> None:
        super().__init__("ceiling", None)

    async def ranked(self, world: World, user: User, qid: int, text: str, k: int, user_id: str,
                     request_id: str) -> tuple[np.ndarray, bool]:
        return world.ideal(user, qid, k), True


async def ranked_ids(stub: ranking_pb2_grpc.RankerStub, text: str, k: int,
                     user: ranking_pb2.UserContext | None, request_id: str = "") -> tuple[np.ndarray, bool]:
    """The ranked item ids and whether the summary says the list was personalised."""
    ids, personalized = [], False
    async for m in stub.Rank(rank_request(text, k=k, user=user, request_id=request_id), timeout=60):
        if m.HasField("item"):
            ids.append(m.item.item_id)
        else:
            personalized = m.summary.personalized
    return np.array(ids, dtype=np.int64), personalized


async def run_simulation(world: World, targets: dict[str, str], cfg: SimConfig, *, progress: bool = True
                         ) -> dict:
    """Drive every arm in ``targets`` (arm -> HOST:PORT) for ``cfg.steps`` steps; the report as a dict."""
    channels = {t: grpc.aio.insecure_channel(t) for t in set(targets.values())}
    try:
        arms = [Arm(a, ranking_pb2_grpc.RankerStub(channels[targets[a]])) for a in ARMS if a in targets]
        ceiling = Ceiling()
        users = world.users(cfg.users)
        rng = np.random.default_rng(cfg.seed)
        with Progress(disable=not progress) as bar:
            task = bar.add_task("simulate", total=cfg.steps)
            for step in range(cfg.steps):
                user = users[int(rng.integers(len(users)))]
                query = world.query_for(user, rng)
                u = rng.random((3, cfg.k))
                for arm in [*arms, ceiling]:
                    await arm.step(world, user, step, query, cfg.k, u)
                bar.advance(task)
        cold = await cold_start(world, ranking_pb2_grpc.RankerStub(channels[targets[arms[-1].name]]), cfg)
        arms.append(ceiling)
    finally:
        for ch in channels.values():
            await ch.close()
    return report(arms, cold, cfg)


async def cold_start(world: World, stub: ranking_pb2_grpc.RankerStub, cfg: SimConfig) -> dict:
    """NDCG@10 on the catalog's judgments for users never seen, against the same queries without a user."""
    rng = np.random.default_rng(cfg.seed + 1)
    picks = rng.choice(len(world.queries), min(cfg.cold_queries, len(world.queries)), replace=False)
    with_user, without = [], []
    for n, i in enumerate(picks.tolist()):
        qid, text = int(world.queries.iloc[i]["query_id"]), str(world.queries.iloc[i]["query"])
        judged = world.rel[qid]
        ideal = 2.0 * np.array(list(judged.values()))  # back to graded 0/1/2
        newcomer = ranking_pb2.UserContext(user_id=f"cold-{cfg.seed}-{n}")
        for out, user in ((with_user, newcomer), (without, None)):
            items, _ = await ranked_ids(stub, text, cfg.k, user)
            rels = 2.0 * world.relevance(qid, items)
            out.append(ndcg_at_k(-np.arange(len(items), dtype=np.float64), rels, 10, ideal))
    return {"ndcg@10": nanmean(with_user), "baseline_ndcg@10": nanmean(without), "queries": len(picks)}


def report(arms: list[Arm], cold: dict, cfg: SimConfig) -> dict:
    last = max(1, round(cfg.steps * LAST_SHARE))
    window = max(1, cfg.steps // 20)
    out: dict = {"config": asdict(cfg), "generated": True, "arms": {}, "cold_start": cold}
    static = next((a.trace for a in arms if a.name == "static"), None)
    for arm in arms:
        summary = _summary(arm.trace, last, window)
        if static is not None and arm.trace is not static:
            ratio = ctr_ratio(arm.trace, static, last, np.random.default_rng(cfg.seed))
            summary["ctr_vs_static_last20"] = ratio[0] if ratio else None
            # JSON has no infinity: an unbounded upper end is written as null
            bounds = [b if np.isfinite(b) else None for b in ratio[1:]] if ratio else None
            summary["ctr_vs_static_ci95"] = bounds
        if isinstance(arm, Ceiling):  # no arm of the experiment: the reachable best, beside them
            out["ceiling"] = summary
        else:
            out["arms"][arm.name] = summary
    return out


def ctr_ratio(arm: ArmTrace, static: ArmTrace, last: int, rng: np.random.Generator,
              resamples: int = BOOTSTRAP) -> tuple[float, float, float] | None:
    """The arm's CTR over static's in the last ``last`` steps, and a 95% paired-bootstrap interval:
    steps are resampled together for both arms, which saw the same users, queries and draws. None when
    static has fewer than ``MIN_STATIC_CLICKS`` clicks there (a short run: no ratio to speak of)."""
    s = slice(len(arm.clicks) - last, None)
    a_c, a_n, b_c, b_n = (np.asarray(x[s], dtype=np.float64)
                          for x in (arm.clicks, arm.shown, static.clicks, static.shown))
    if b_c.sum() < MIN_STATIC_CLICKS or not a_n.sum():
        return None
    idx = rng.integers(0, len(a_c), size=(resamples, len(a_c)))
    # Shown counts are positive wherever clicks are; a resample without static clicks reads +inf, and
    # the percentiles pick order statistics (no interpolation between infinities).
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (a_c[idx].sum(1) * b_n[idx].sum(1)) / (a_n[idx].sum(1) * b_c[idx].sum(1))
    boot = np.nan_to_num(boot, nan=np.inf, posinf=np.inf)
    lo = float(np.percentile(boot, 2.5, method="lower"))
    hi = float(np.percentile(boot, 97.5, method="higher"))
    return _ratio(a_c, a_n) / _ratio(b_c, b_n), lo, hi


def _summary(trace: ArmTrace, last: int, window: int) -> dict:
    t = {k: np.asarray(v, dtype=np.float64) for k, v in asdict(trace).items()}
    s = slice(len(t["shown"]) - last, None)
    return {
        "ctr_last20": _ratio(t["clicks"][s], t["shown"][s]),
        "cvr_last20": _ratio(t["purchases"][s], t["clicks"][s]),
        "ndcg_pref_last20": nanmean(t["ndcg_pref"][s].tolist()),
        "ctr": _ratio(t["clicks"], t["shown"]),
        "personalized_share": float(t["personalized"].mean()),
        "curves": {
            "step": list(range(window, len(t["shown"]) + 1, window)),
            "ctr": [_ratio(c, n) for c, n in _windows(t["clicks"], t["shown"], window)],
            "ndcg_pref": [nanmean(w.tolist()) for w in _chunks(t["ndcg_pref"], window)],
            "cumulative_regret": np.cumsum(1.0 - np.nan_to_num(t["ndcg_pref"], nan=1.0))[
                window - 1 :: window].tolist(),
        },
    }


def _ratio(num: np.ndarray, den: np.ndarray) -> float:
    d = float(np.sum(den))
    return float(np.sum(num)) / d if d else float("nan")


def _chunks(x: np.ndarray, n: int) -> Iterator[np.ndarray]:
    for i in range(0, len(x) - n + 1, n):
        yield x[i : i + n]


def _windows(a: np.ndarray, b: np.ndarray, n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    yield from zip(_chunks(a, n), _chunks(b, n), strict=True)


def write_plot(rep: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for name, arm in [*rep["arms"].items(), ("ceiling (knows the taste)", rep["ceiling"])]:
        c = arm["curves"]
        axes[0].plot(c["step"], c["ctr"], label=name)
        axes[1].plot(c["step"], c["ndcg_pref"], label=name)
        axes[2].plot(c["step"], c["cumulative_regret"], label=name)
    titles = ("CTR (clicks per item shown)", "NDCG@10 against hidden preferences",
              "cumulative regret (Σ 1 − NDCG_pref)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(xlabel="step", title=title)
        ax.legend(fontsize=8)
    fig.suptitle(f"Simulated shoppers on a generated catalog ({rep['config']['users']} users, "
                 f"seed {rep['config']['seed']})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def simulate(catalog: Path, model: Path, cfg: SimConfig, *, target: str | None, json_out: Path | None,
             plot_out: Path | None, progress: bool = True) -> dict:
    world = World(load_catalog(catalog), cfg.seed)
    with contextlib.ExitStack() as stack:
        if target is None:
            from benchmarks.e2e import running_server

            profile = stack.enter_context(running_server(catalog, model, env={"RANKSERVE_BANDIT": "false"}))
            bandit = stack.enter_context(running_server(catalog, model, env={"RANKSERVE_BANDIT": "true"}))
            targets = {"static": profile.target, "profile": profile.target, "profile_bandit": bandit.target}
        else:
            targets = {"static": target, personalization_of(target): target}
        rep = asyncio.run(run_simulation(world, targets, cfg, progress=progress))
    if json_out is not None:
        json_out.write_text(json.dumps(rep, indent=2))
    if plot_out is not None:
        write_plot(rep, plot_out)
    return rep


def personalization_of(target: str) -> str:
    """The arm a running server plays: its Info.personalization ("profile" or "profile_bandit")."""
    async def ask() -> str:
        async with grpc.aio.insecure_channel(target) as ch:
            info = await ranking_pb2_grpc.RankerStub(ch).Info(ranking_pb2.InfoRequest(), timeout=10)
            return info.personalization
    mode = asyncio.run(ask())
    if mode not in ARMS[1:]:
        raise ValueError(f"{target} does not personalise (Info.personalization={mode!r})")
    return mode

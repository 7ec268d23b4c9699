"""A fast screen for profile ideas: the simulated shoppers of `world` without a server, in seconds.

`rankserve simulate` drives the real servers and takes 10-15 minutes a run, and one run's CTR moves by
±7% with its draws. This screen runs the same users, click model and profile code
(`feedback.profile`, `pipeline.personalize`, `pipeline.diversify.mmr`) in process over several seeds, so
an idea is screened on many draws first and only then confirmed over gRPC. The personalised arms run the
server's own `feedback.policy.Policy` as `rankserve simulate`'s servers do: ``profile`` at the fixed
weight, ``profile_bandit`` with the Thompson bandit choosing it, both shuffling a share of their lists to
estimate the position propensities their profiles then weigh clicks by. Candidates and relevance are the
served ones where ``capture`` has saved them (one pass of every judged query through a real server:
its top 100 at λ = 1 and their normalised relevance); without them, a stand-in: the query's judged
items plus random others, relevance the judgment's gain plus noise, which measured different verdicts
(docs/personalization.md). Expected CTR (examination × click probability summed over the list) is
reported beside the drawn CTR: it has no click noise.

    python -m benchmarks.simulation.offline capture --catalog artifacts/catalog --model artifacts/model \
        --out served.npz
    python -m benchmarks.simulation.offline screen --catalog artifacts/catalog --lists served.npz
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.simulation.world import ETA, NOISE, User, World
from catalog.io import Catalog, load_catalog
from feedback.events import Event, EventType
from feedback.policy import Policy, request_seed
from feedback.profile import ItemColumns, ProfileBook, UserProfile
from pipeline.diversify import mmr
from pipeline.personalize import SHUFFLED_TOP, Personalizer, relevance_gate, shuffle_top
from retrieval.index import VECTORS_FILE

CANDIDATES = 100
RELEVANCE_NOISE = 0.15
LAMBDA = 0.9
K = 10
LAST_SHARE = 0.2

# personal scores for (world, user, profile or None, candidates, relevance, weight); None: unpersonalised
Ranker = Callable[[World, User, UserProfile | None, np.ndarray, np.ndarray, float], np.ndarray | None]
# name -> (ranker, a fresh policy for the arm's run or None: weight 1, no exploration, true propensities)
Arms = dict[str, tuple[Ranker, Callable[[], Policy] | None]]


def rankers(personalizer: Personalizer) -> Arms:
    personal: Ranker = lambda w, u, p, c, r, wt: personalizer.scores(p, c, wt, relevance=r)  # noqa: E731
    return {
        "static": (lambda w, u, p, c, r, wt: None, None),
        "profile": (personal, lambda: Policy(bandit=False)),
        "profile_bandit": (personal, lambda: Policy(bandit=True)),
        # Knows the hidden taste: how far the profile is from what its users want.
        "oracle": (lambda w, u, p, c, r, wt: wt * w.taste(u, c) * relevance_gate(r), None),
    }


# query id -> (candidate ids, their relevance), best first
Lists = dict[int, tuple[np.ndarray, np.ndarray]]


def capture(catalog: Path, model: Path, out: Path) -> int:
    """Every judged query's served top ``CANDIDATES`` (λ = 1, no user) with the relevance part of each
    item's explanation, from a real server on loopback; saved to ``out`` (npz). Returns the count."""
    import asyncio

    import grpc

    from benchmarks.e2e import running_server
    from protos.ranking.v1 import ranking_pb2_grpc
    from server.client import rank_request

    world = World(load_catalog(catalog), seed=0)

    async def fetch(target: str) -> dict[str, np.ndarray]:
        saved: dict[str, np.ndarray] = {}
        async with grpc.aio.insecure_channel(target) as channel:
            stub = ranking_pb2_grpc.RankerStub(channel)
            for qid, text in zip(world.queries["query_id"], world.queries["query"], strict=True):
                ids, rel = [], []
                req = rank_request(str(text), k=CANDIDATES, lam=1.0, candidates=CANDIDATES, bypass_cache=True)
                async for m in stub.Rank(req, timeout=120):
                    if m.HasField("item"):
                        ids.append(m.item.item_id)
                        rel.append(sum(c.value for c in m.item.explanation if c.name == "relevance"))
                    elif m.summary.degraded:  # retrieval order is not the served relevance
                        raise RuntimeError(f"query {qid}: served degraded ({m.summary.degraded_reason})")
                if not ids:
                    raise RuntimeError(f"query {qid}: the server returned no items")
                saved[f"ids_{qid}"], saved[f"rel_{qid}"] = np.array(ids, np.int64), np.array(rel, np.float32)
        return saved

    with running_server(catalog, model, env={"RANKSERVE_BANDIT": "false"}) as server:
        saved = asyncio.run(fetch(server.target))
    np.savez_compressed(out, **saved)
    return len(saved) // 2


def load_lists(path: Path, world: World | None = None) -> Lists:
    """``capture``'s lists; with ``world``, checked to cover its judged queries (same catalog)."""
    with np.load(path) as f:
        lists = {int(k[4:]): (f[k], f[f"rel_{k[4:]}"]) for k in f.files if k.startswith("ids_")}
    if world is not None:
        missing = sorted(set(world.queries["query_id"].astype(int)) - set(lists))
        if missing or any(ids.max() >= world.n_items for ids, _ in lists.values()):
            raise ValueError(f"{path}: not captured from this catalog (missing query ids {missing[:5]}, "
                             "or item ids beyond it)")
    return lists


def _stand_in(world: World, qid: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    judged = np.array(list(world.rel[qid]), dtype=np.int64)[:CANDIDATES]
    others = np.setdiff1d(np.arange(world.n_items), judged)  # no item twice in one list
    cand = np.concatenate([judged, rng.choice(others, CANDIDATES - judged.size, replace=False)])
    relevance = world.relevance(qid, cand) + rng.normal(0.0, RELEVANCE_NOISE, cand.size)
    order = np.argsort(-relevance, kind="stable")
    return cand[order], relevance[order]


def run_arm(world: World, shoppers: list[User], items: ItemColumns, rank: Ranker, *, seed: int,
            searches: int, lists: Lists | None = None, policy: Policy | None = None) -> dict[str, float]:
    """Each shopper searches ``searches`` times (round robin) with draws from ``seed``, the same for
    every arm; the last 20% of searches are summarised. With ``policy``, as the server personalises: a
    list with a profile behind it gets the policy's weight and exploration, and clicks are weighed by the
    policy's estimated propensities."""
    rng = np.random.default_rng(seed)
    book = ProfileBook(items)
    true_weight = lambda pos: float(min(max(pos, 1), 10) ** ETA)  # noqa: E731
    position_weight = policy.click_weight if policy is not None else true_weight
    rows = []
    for step in range(len(shoppers) * searches):
        user = shoppers[step % len(shoppers)]
        # Request ids seed the policy's draws: shared by the arms of a seed (paired), not across seeds.
        uid, at, request_id = f"u{user.index}", step * 1000, f"s{seed}-r{step}"
        qid, _ = world.query_for(user, rng)
        cand, relevance = lists[qid] if lists is not None else _stand_in(world, qid, rng)
        profile, weight, explore = book.for_request(uid, (), at), 1.0, None
        if policy is not None and profile is not None:
            d = policy.decide(request_id, uid, profile.interactions)
            weight, explore = d.weight, request_seed(request_id, "shuffle") if d.explore else None
        personal = rank(world, user, profile, cand, relevance, weight)
        order = [p.index for p in mmr(relevance, items.vectors[cand], K, LAMBDA, personal)]
        if explore is not None:  # as pipeline.Pipeline serves an exploring list
            top = order[:SHUFFLED_TOP]
            shuffle_top(top, explore)
            order = top + order[SHUFFLED_TOP:]
        shown = cand[order]
        clicked, bought = world.interact(user, qid, shown, rng.random((3, shown.size)))
        ranks = np.arange(1, shown.size + 1)
        click_p = world.relevance(qid, shown) * world.taste(user, shown) + NOISE
        expected = float((ranks**-ETA * click_p).sum())
        rows.append((expected / shown.size, clicked.mean(), world.ndcg_pref(user, qid, shown)))
        events = [Event(f"{step}-i{r}", request_id, uid, int(i), EventType.IMPRESSION, r + 1, at)
                  for r, i in enumerate(shown)]
        events += [Event(f"{step}-c{r}", request_id, uid, int(i), EventType.CLICK, r + 1, at)
                   for r, i in enumerate(shown) if clicked[r]]
        events += [Event(f"{step}-p{r}", request_id, uid, int(i), EventType.PURCHASE, r + 1, at)
                   for r, i in enumerate(shown) if bought[r]]  # as `rankserve simulate` sends them
        if policy is not None:  # in the hub's order: the policy learns, then the profiles
            policy.learn(events)
        book.apply(events, position_weight=position_weight)
    last = np.array(rows[int(len(rows) * (1 - LAST_SHARE)):])
    return {"expected_ctr": float(last[:, 0].mean()), "ctr": float(last[:, 1].mean()),
            "ndcg_pref": float(np.nanmean(last[:, 2]))}


def catalog_items(catalog: Path, cat: Catalog | None = None) -> ItemColumns:
    """What the profiles read per item of a built catalog directory (its products and vectors)."""
    products = (cat if cat is not None else load_catalog(catalog)).products.sort_index()
    vectors = np.load(catalog / VECTORS_FILE).astype(np.float32)
    return ItemColumns.of(vectors, products["product_class"].tolist(), products["price"].to_numpy(),
                          products["product_features"].tolist())


def screen(catalog: Path, seeds: list[int], *, users: int = 30, searches: int = 40,
           lists: Path | None = None) -> dict:
    cat = load_catalog(catalog)
    items = catalog_items(catalog, cat)
    arms = rankers(Personalizer(items, 1.0))
    worlds = {seed: World(cat, seed) for seed in seeds}
    served = load_lists(lists, worlds[seeds[0]]) if lists is not None else None
    out: dict = {"generated": True, "users": users, "searches": searches, "seeds": {},
                 "lists": str(lists) if lists is not None else "stand-in"}
    for seed in seeds:
        shoppers = worlds[seed].users(users)  # one draw of users per seed: every arm serves the same
        res = {name: run_arm(worlds[seed], shoppers, items, rank, seed=seed, searches=searches, lists=served,
                             policy=make() if make is not None else None)
               for name, (rank, make) in arms.items()}
        for name in ("profile", "profile_bandit", "oracle"):
            res[name]["expected_ctr_vs_static"] = res[name]["expected_ctr"] / res["static"]["expected_ctr"]
        out["seeds"][seed] = res
        rounded = {k: {m: round(v, 4) for m, v in r.items()} for k, r in res.items()}
        print(json.dumps({"seed": seed, **rounded}), flush=True)
    out["mean_expected_ctr_vs_static"] = {
        arm: float(np.mean([r[arm]["expected_ctr_vs_static"] for r in out["seeds"].values()]))
        for arm in ("profile", "profile_bandit")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture", help="save every judged query's served list from a real server")
    c.add_argument("--catalog", type=Path, required=True)
    c.add_argument("--model", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("screen")
    s.add_argument("--catalog", type=Path, required=True)
    s.add_argument("--lists", type=Path, help="`capture`'s file (default: the stand-in lists)")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 2, 3])
    s.add_argument("--users", type=int, default=30)
    s.add_argument("--searches", type=int, default=40, help="searches per user")
    s.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cmd == "capture":
        print(f"{capture(args.catalog, args.model, args.out)} served lists saved to {args.out}")
        return
    rep = screen(args.catalog, args.seeds, users=args.users, searches=args.searches, lists=args.lists)
    for arm, ratio in rep["mean_expected_ctr_vs_static"].items():
        print(f"{arm} expected CTR vs static, mean over seeds: {ratio:.3f}")
    if args.json:
        args.json.write_text(json.dumps(rep, indent=2))


if __name__ == "__main__":
    main()

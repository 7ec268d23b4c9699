"""The simulated shoppers' world: tastes read from item features and prices, position-biased clicks
from shared random draws, and NDCG against a user's taste."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.simulation.offline import catalog_items
from benchmarks.simulation.profile_cost import fit_times, profile_kib
from benchmarks.simulation.world import User, World
from catalog.io import load_catalog
from feedback.taste import MAX_COLUMNS


@pytest.fixture(scope="module")
def sim_catalog(small_queries: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from catalog.builder import build_catalog
    from retrieval.index import build_item_index

    out = build_catalog(small_queries, tmp_path_factory.mktemp("sim") / "catalog", seed=0, products=2000,
                        progress=False)
    build_item_index(out, factory="Flat", progress=False)  # the item vectors the offline screen reads
    return out


@pytest.fixture(scope="module")
def world(sim_catalog: Path) -> World:
    return World(load_catalog(sim_catalog), seed=0)


def test_taste_reads_colour_material_and_price(world: World) -> None:
    i = int(np.flatnonzero(world.colour != "")[0])
    fan = User(0, frozenset({world.colour[i]}), str(world.material[i]), float(world.price[i]), ("x",))
    stranger = User(1, frozenset({"no such colour"}), "no such material", float(world.price[i]) * 50, ("x",))
    assert world.taste(fan, np.array([i]))[0] == pytest.approx(
        0.4 + 0.2 * (world.material[i] != "") + 0.4)
    assert world.taste(stranger, np.array([i]))[0] < 0.01


def test_clicks_follow_relevance_position_and_the_shared_draws(world: World) -> None:
    qid = next(iter(world.rel))
    judged = np.array([p for p, g in world.rel[qid].items() if g > 0][:10])
    user = world.users(1)[0]
    u = np.random.default_rng(0).random((3, len(judged)))
    a = world.interact(user, qid, judged, u)
    b = world.interact(user, qid, judged, u)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # same draws, same clicks
    clicked, bought = a
    assert not (bought & ~clicked).any()
    none_examined = np.ones_like(u)  # draws of 1: nothing below rank 1 is examined, nothing clicked
    assert not world.interact(user, qid, judged, none_examined)[0].any()
    unjudged = np.setdiff1d(np.arange(world.n_items), list(world.rel[qid]))[: len(judged)]
    always = np.zeros_like(u)  # every draw 0: examined, and clicked iff the attraction is positive
    assert world.interact(user, qid, unjudged, always)[0].all()  # noise clicks happen on anything
    assert world.interact(user, qid, judged, always)[0].all()


def test_ndcg_against_taste_is_one_for_the_taste_ideal_order(world: World) -> None:
    qid = next(iter(world.rel))
    user = world.users(2)[1]
    judged = np.array(list(world.rel[qid]))
    gains = world.relevance(qid, judged) * world.taste(user, judged)
    best = judged[np.argsort(-gains, kind="stable")]
    assert world.ndcg_pref(user, qid, best) == pytest.approx(1.0)
    assert world.ndcg_pref(user, qid, best[::-1]) < 1.0


def test_offline_screen_is_seeded_and_the_taste_oracle_bounds_the_profile(sim_catalog: Path) -> None:
    from benchmarks.simulation.offline import screen

    a = screen(sim_catalog, [0], users=6, searches=20)
    assert a == screen(sim_catalog, [0], users=6, searches=20)  # same seed, same figures
    arms = a["seeds"][0]
    # Common random numbers: every arm sees the same users, queries and candidates, so knowing the
    # hidden taste must beat showing none, and learning it from clicks must lift NDCG against it.
    assert arms["oracle"]["expected_ctr"] > arms["static"]["expected_ctr"]
    assert arms["oracle"]["ndcg_pref"] > arms["profile"]["ndcg_pref"] > arms["static"]["ndcg_pref"]
    assert arms["profile_bandit"]["ndcg_pref"] > arms["static"]["ndcg_pref"]
    assert a["mean_expected_ctr_vs_static"] == {arm: arms[arm]["expected_ctr_vs_static"]
                                                for arm in ("profile", "profile_bandit")}


def test_ctr_ratio_interval_is_paired_over_steps_and_covers_the_ratio() -> None:
    from benchmarks.simulation.run import ArmTrace, ctr_ratio

    rng = np.random.default_rng(0)
    clicks = rng.integers(0, 3, 400).tolist()
    static = ArmTrace(clicks, [0] * 400, [10] * 400, [0.5] * 400, [0] * 400)
    double = ArmTrace([2 * c for c in clicks], [0] * 400, [10] * 400, [0.5] * 400, [1] * 400)
    ratio, lo, hi = ctr_ratio(double, static, 80, np.random.default_rng(1))
    # Paired: every resample holds the same steps of both arms, so twice the clicks is exactly 2.
    assert ratio == pytest.approx(2.0) and lo == pytest.approx(2.0) and hi == pytest.approx(2.0)
    noisy = ArmTrace(rng.integers(0, 4, 400).tolist(), [0] * 400, [10] * 400, [0.5] * 400, [1] * 400)
    ratio, lo, hi = ctr_ratio(noisy, static, 80, np.random.default_rng(1))
    assert lo < ratio < hi and hi - lo > 0.2  # 80 steps of a few clicks: a wide interval
    # Only the last 80 steps count: clicks before them change nothing.
    early = ArmTrace([50] * 320 + noisy.clicks[320:], [0] * 400, [10] * 400, [0.5] * 400, [1] * 400)
    assert ctr_ratio(early, static, 80, np.random.default_rng(1)) == (ratio, lo, hi)
    # Static's window with too few clicks to divide by: no ratio, no interval (not a crash, not NaN).
    quiet = ArmTrace([0] * 395 + [1] * 5, [0] * 400, [10] * 400, [0.5] * 400, [0] * 400)
    assert ctr_ratio(noisy, quiet, 80, np.random.default_rng(1)) is None
    # Ten clicks, all at one step: a third of the resamples miss it and hold none. The upper bound is
    # then +inf, never NaN, and the lower one still finite.
    lumped = ArmTrace([0] * 399 + [10], [0] * 400, [10] * 400, [0.5] * 400, [0] * 400)
    _, lo, hi = ctr_ratio(noisy, lumped, 80, np.random.default_rng(1))
    assert 0 < lo < np.inf and hi == np.inf


def test_profile_cost_fits_capped_models_on_a_built_catalog(sim_catalog: Path) -> None:
    rows = fit_times(catalog_items(sim_catalog), [5, 200])
    assert [r["clicks"] for r in rows] == [5, 200]
    assert all(0 < r["columns"] <= MAX_COLUMNS and r["ms"] > 0 for r in rows)
    assert rows[1]["columns"] >= rows[0]["columns"]  # more clicks, more values interacted with


def test_profile_memory_grows_with_history_and_stays_small(sim_catalog: Path) -> None:
    items = catalog_items(sim_catalog)
    light, heavy = profile_kib(items, 5, users=10), profile_kib(items, 60, users=10)
    # 600 impressions: a full window (~8.5 kB as arrays; ~155 KiB in all as a dict of objects, session 7)
    assert 0 < light < heavy < 110

"""`rankserve simulate` end to end, small: it starts its own two servers, drives them over gRPC, and
writes the report and plot. (The figures that judge personalisation come from the long run in
docs/personalization.md; this checks the machinery and the cold-start guarantee.)"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Artifacts, rankserve_bin


def test_simulate_small_run_writes_report_and_plot(artifacts: Artifacts, tmp_path: Path) -> None:
    out, plot = tmp_path / "sim.json", tmp_path / "sim.png"
    proc = subprocess.run(
        [rankserve_bin(), "simulate", "--users", "6", "--steps", "25", "--seed", "3", "--json", str(out),
         "--plot", str(plot), "--catalog", str(artifacts.catalog), "--model", str(artifacts.model),
         "--no-progress"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert set(rep["arms"]) == {"static", "profile", "profile_bandit"} and rep["generated"]
    for arm in rep["arms"].values():
        for key in ("ctr_last20", "cvr_last20", "ndcg_pref_last20"):
            assert key in arm
        assert 0.0 <= arm["ctr_last20"] <= 1.0
        assert len(arm["curves"]["ctr"]) == len(arm["curves"]["step"]) == 25
        regret = arm["curves"]["cumulative_regret"]
        assert all(b >= a for a, b in itertools.pairwise(regret))
    assert rep["arms"]["static"]["personalized_share"] == 0.0
    assert "ctr_vs_static_ci95" not in rep["arms"]["static"]
    for name in ("profile", "profile_bandit"):  # a 5-step window: an interval only with 10 static clicks
        arm = rep["arms"][name]
        if rep["arms"]["static"]["ctr_last20"] * 50 >= 10:
            lo, hi = arm["ctr_vs_static_ci95"]
            assert lo <= arm["ctr_vs_static_last20"] <= (hi if hi is not None else float("inf"))
        else:
            assert arm["ctr_vs_static_last20"] is None and arm["ctr_vs_static_ci95"] is None
    # After a user's first click their lists are personal (both personalised arms).
    assert rep["arms"]["profile"]["personalized_share"] > 0.0
    assert rep["arms"]["profile_bandit"]["personalized_share"] > 0.0
    cold = rep["cold_start"]
    assert cold["ndcg@10"] == pytest.approx(cold["baseline_ndcg@10"], abs=0.01)
    assert plot.stat().st_size > 10_000


def test_offline_screen_captures_the_served_lists_and_screens_on_them(artifacts: Artifacts, tmp_path: Path
                                                                      ) -> None:
    import numpy as np

    from benchmarks.simulation.offline import CANDIDATES, capture, load_lists, screen
    from benchmarks.simulation.world import World
    from catalog.io import load_catalog

    out = tmp_path / "served.npz"
    n = capture(artifacts.catalog, artifacts.model, out)
    lists = load_lists(out)
    world = World(load_catalog(artifacts.catalog), seed=0)
    assert n == len(lists) == len(world.queries) > 0  # every judged query, once
    for ids, rel in lists.values():
        assert 0 < len(ids) == len(rel) <= CANDIDATES and len(set(ids.tolist())) == len(ids)
        assert (np.diff(rel) <= 1e-6).all()  # λ = 1: served best first by relevance alone
    with np.load(out) as f:
        saved = {k: f[k] for k in f.files}
    first = next(k for k in saved if k.startswith("ids_"))
    short = tmp_path / "short.npz"
    np.savez(short, **{k: v for k, v in saved.items() if k not in (first, f"rel_{first[4:]}")})
    with pytest.raises(ValueError, match="not captured from this catalog"):
        load_lists(short, world)  # a query of this catalog has no list: another catalog's file
    rep = screen(artifacts.catalog, [0], users=4, searches=10, lists=out)
    assert rep["lists"] == str(out)
    arms = rep["seeds"][0]
    assert arms["oracle"]["expected_ctr"] > arms["static"]["expected_ctr"]

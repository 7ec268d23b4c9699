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
    # After a user's first click their lists are personal (both personalised arms).
    assert rep["arms"]["profile"]["personalized_share"] > 0.0
    assert rep["arms"]["profile_bandit"]["personalized_share"] > 0.0
    cold = rep["cold_start"]
    assert cold["ndcg@10"] == pytest.approx(cold["baseline_ndcg@10"], abs=0.01)
    assert plot.stat().st_size > 10_000

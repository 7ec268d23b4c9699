"""`rankserve bench --quick` end to end, and the latency recorder's open-loop accounting."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.latency import (
    LatencyRecorder,
    Outcome,
    closed_loop,
    open_loop,
    poisson_schedule,
    uniform_schedule,
)
from benchmarks.reranker_bench import time_loop
from tests.conftest import Artifacts, rankserve_bin, tritonserver_pids

RERANKER_KEYS = ("torch_eager_pairs_s", "st_crossencoder_pairs_s", "ort_fp32_pairs_s", "ort_int8_pairs_s",
                 "triton_int8_pairs_s", "triton_int8_c1_pairs_s", "gemm_fp32_gflops", "gemm_int8_gops",
                 "reranker_gops")
E2E_KEYS = ("qps", "p50_ms", "p95_ms", "p99_ms", "first_item_p50_ms")
BENCH_MARKER = "rankserve-bench-"  # the bench's work dir prefix: in every Triton command line it starts


def test_recorder_percentiles_of_known_values() -> None:
    rec = LatencyRecorder()
    for ms in range(1, 1001):  # 1..1000 ms: p50 = 500, p99 = 990
        rec.record(ms / 1e3, Outcome(first_item_s=ms / 2e3))
    rec.record(5.0, Outcome(code="RESOURCE_EXHAUSTED"))  # shed: counted, never a latency
    s = rec.summary(wall_s=10.0)
    assert s["requests"] == 1001 and s["ok"] == 1000 and s["errors"] == 1
    assert s["codes"] == {"OK": 1000, "RESOURCE_EXHAUSTED": 1}
    assert s["p50_ms"] == pytest.approx(500, rel=0.002)
    assert s["p99_ms"] == pytest.approx(990, rel=0.002)
    assert s["first_item_p50_ms"] == pytest.approx(250, rel=0.002)
    assert s["qps"] == pytest.approx(100.0)


def test_open_loop_charges_queueing_from_the_scheduled_time() -> None:
    """The client's own loop stalls for 400 ms inside the 10th call (a GC pause, a busy box); each call
    then takes 20 ms.

    Requests are scheduled every 40 ms, so those due during the stall go out late, all at once. The
    recorder must report completion minus *scheduled* time (the calls' own completion stamps give the
    truth, so timer jitter cannot fake a pass or a failure); completion minus the actual send, what a
    coordinated-omission client reports, hides the stall, and the test tells the two apart.
    """
    service, stall, stall_at, period, n = 0.020, 0.400, 10, 0.040, 40
    schedule = uniform_schedule(1 / period, n * period)
    assert len(schedule) == n
    done: dict[int, float] = {}
    sent: dict[int, float] = {}

    async def run() -> tuple[LatencyRecorder, float]:
        async def call(i: int) -> Outcome:
            sent[i] = time.perf_counter()
            if i == stall_at:
                time.sleep(stall)  # blocks the event loop: the sends due meanwhile cannot go out
            await asyncio.sleep(service)
            done[i] = time.perf_counter()
            return Outcome(first_item_s=0.0)

        rec = LatencyRecorder()
        t0 = time.perf_counter()
        await open_loop(call, schedule, rec)
        return rec, t0

    rec, t0 = run_in_loop(run)
    assert rec.ok == n
    truth = np.array([done[i] - (t0 + schedule[i]) for i in range(n)])
    omitted = np.array([done[i] - sent[i] for i in range(n)])
    for q in (50, 80, 90, 99):
        want = float(np.percentile(truth, q, method="inverted_cdf")) * 1e3
        assert abs(rec.percentile_ms(q) - want) < 5, (q, rec.percentile_ms(q), want)
    # The two accountings differ where the test looks: a recorder of send-to-done would fail above.
    assert truth.max() >= stall and omitted[stall_at + 1:].max() < stall / 2
    assert np.percentile(truth, 90) - np.percentile(omitted, 90) > 0.1


def test_a_poisson_schedule_offers_exactly_the_rate_asked_for() -> None:
    at = poisson_schedule(1000.0, 10.0, seed=3)
    assert len(at) == 10_000 and np.all(np.diff(at) >= 0) and at[0] >= 0 and at[-1] < 10.0
    gaps = np.diff(at)  # independent arrivals: exponential gaps, standard deviation ~ mean
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05
    assert np.array_equal(at, poisson_schedule(1000.0, 10.0, seed=3))
    assert len(poisson_schedule(0.5, 1.0)) == 1  # never an empty window


def test_every_engine_is_timed_on_whole_passes_over_the_batches() -> None:
    calls: list[int] = []

    def run(i: int) -> int:
        calls.append(i)
        return 1

    time_loop(run, 0.0, cycle=7, warmup=0, min_calls=3)
    assert calls == list(range(7))  # stopped on time after 3 calls, but only at the end of a pass
    calls.clear()
    time_loop(run, 0.0, warmup=0, min_calls=3)
    assert calls == [0, 1, 2]


def test_closed_loop_keeps_concurrency() -> None:
    async def run() -> tuple[LatencyRecorder, int]:
        inflight = peak = 0

        async def call(i: int) -> Outcome:
            nonlocal inflight, peak
            inflight += 1
            peak = max(peak, inflight)
            await asyncio.sleep(0.01)
            inflight -= 1
            return Outcome()

        rec = LatencyRecorder()
        await closed_loop(call, 4, 0.3, rec)
        return rec, peak

    rec, peak = run_in_loop(run)
    assert peak == 4
    assert 40 <= rec.ok <= 130  # ~4 / 10 ms for 0.3 s


def run_in_loop(fn):
    return asyncio.run(fn())


def _positive_numbers(obj, path: str = "") -> list[str]:
    """Paths of numbers in `obj` that are not finite and positive (None / strings are skipped)."""
    bad = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad += _positive_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad += _positive_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, int | float) and not isinstance(obj, bool) and not (math.isfinite(obj) and obj > 0):
        bad.append(f"{path}={obj}")
    return bad


def test_bench_quick_end_to_end(artifacts: Artifacts, tmp_path: Path) -> None:
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    before = tritonserver_pids(BENCH_MARKER)
    proc = subprocess.run(
        [rankserve_bin(), "bench", "--quick", "--catalog", str(artifacts.catalog), "--model",
         str(artifacts.model), "--json", str(out), "--plot", str(plot), "--no-progress"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())

    rr = report["reranker"]
    assert rr["batch"] == 100
    for key in RERANKER_KEYS:
        assert rr[key] > 0, key
    assert rr["perf_analyzer_pairs_s"] is None and rr["perf_analyzer_note"]  # recorded, not faked

    assert [r["concurrency"] for r in report["e2e"]] == [1, 2, 4, 8, 16, 32]
    for row in report["e2e"]:
        for key in E2E_KEYS:
            assert row[key] > 0, (row["concurrency"], key)
        assert isinstance(row["errors"], int) and row["errors"] >= 0
    assert [r["x_saturation"] for r in report["open_loop"]] == [0.5, 0.8, 1.0, 1.2]
    for row in report["open_loop"]:
        assert 0 <= row["shed_share"] <= 1 and row["sent"] > 0
    stages = report["stages_p50_ms"]
    assert {"embed", "ann", "tokenize", "triton", "mmr", "send", "total"} <= set(stages)
    assert stages["triton"] > 0 and stages["total"] >= stages["triton"]

    demo = report["retrieval"]["demo"]
    assert demo["served"]["qps"] > 0 and 0 < demo["served"]["recall"] <= 1 and demo["flat"]["recall"] == 1
    large = report["retrieval"]["large"]
    assert large["items"] == 20_000 and large["hnswlib"]["curve"] and large["faiss_hnsw"]["curve"]
    assert not _positive_numbers({k: report[k] for k in ("stages_p50_ms", "rss_bytes")}
                                 | {"reranker": {k: rr[k] for k in RERANKER_KEYS}}
                                 | {"machine": {"cores": report["machine"]["cores"]}})
    assert report["machine"]["cpu"] and report["machine"]["versions"]["onnxruntime"]
    assert set(report["targets"]) >= {"triton_vs_torch_eager", "e2e_saturation_vs_reranker_bound",
                                      "feedback_ingest_events_per_s"}
    fb = report["e2e_detail"]["feedback"]
    assert fb["events"] == 8000 and fb["events_per_s"] > 0 and fb["empty_loop_events_per_s"] > 0
    assert fb["rank_requests_during"] > 0  # the events were ingested while ranking ran
    assert 0 <= fb["personalised_rank_requests_during"] <= fb["profiled_rank_requests_during"]
    assert fb["profiled_rank_requests_during"] <= fb["rank_requests_during"]
    # The ranking traffic's users are the events' users: after the acks, user 0's next list is ranked with
    # a profile holding every one of their events (whether the bandit then personalises it is chance).
    assert fb["user0_events"] > 0 and fb["user0_profile_version_after_ingest"] == fb["user0_events"]
    reads = report["profile_reads"]  # searches by users not held read the log beside the commits
    assert reads["hot"]["profile_reads"] == 0 and reads["cold"]["profile_reads"] > 0
    cold_target = report["targets"]["feedback_ingest_cold_reads_vs_hot"]
    assert cold_target["value"] == reads["cold_vs_hot_events_per_s"]
    over = report["e2e_detail"]["overload"]
    assert over["x_saturation"] == 4.0 and over["sent"] > 0 and sum(over["codes"].values()) == over["sent"]
    assert over["rss_bytes"]["warm"] > 0 and over["rss_bytes"]["end"] > 0 and over["server_alive"]
    assert {"overload_only_expected_statuses", "overload_rss_growth",
            "overload_admitted_p99_vs_unloaded"} <= set(report["targets"])
    slow = report["e2e_detail"]["slow_clients"]
    assert slow["stalled_streams"] == 60 and slow["message_bytes_sent"] == 0  # never read a byte
    assert slow["ended"] == 60 and slow["latest_past_deadline_s"] <= 1.0  # each cut at its deadline
    assert slow["codes"].get("OK", 0) > 0 and slow["rss_bytes"]["during"] > 0
    assert report["targets"]["slow_clients_ended_at_deadline"]["met"] is True
    assert "slow_clients_p99_vs_normal" in report["targets"]
    cold = report["e2e_detail"]["cold_start"]
    assert cold["first_request_ms"] > 0 and cold["steady_p50_ms"] > 0 and cold["concurrency"] == 1
    assert report["targets"]["first_request_vs_steady_p50"]["value"] == pytest.approx(cold["ratio"])

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    # Nothing left running: the server and every tritonserver the bench started are gone.
    assert report["e2e_detail"]["left_running"] == []
    assert tritonserver_pids(BENCH_MARKER) <= before


def test_qps_at_equal_recall_is_interpolated_on_the_curve() -> None:
    from benchmarks.retrieval_bench import qps_at_recall

    curve = [{"recall": 0.80, "qps": 1000.0}, {"recall": 0.90, "qps": 400.0}, {"recall": 0.95, "qps": 100.0}]
    # Between 0.80 and 0.90, halfway: the geometric mean of 1000 and 400.
    assert qps_at_recall(curve, 0.85) == pytest.approx((1000 * 400) ** 0.5)
    assert qps_at_recall(curve, 0.90) == pytest.approx(400.0)  # on a point: that point
    assert qps_at_recall(curve, 0.70) == pytest.approx(1000.0)  # below the curve: its fastest point
    assert qps_at_recall(curve, 0.96) is None  # never reached
    # A slower point below the target does not pull the estimate down.
    assert qps_at_recall([*curve, {"recall": 0.89, "qps": 50.0}], 0.85) == pytest.approx((1000 * 400) ** 0.5)

"""End to end over gRPC: the real server (a `rankserve serve` subprocess with Triton as its child) under a
closed-loop and then an open-loop async client running in this process.

Client and server are separate processes so the client's Python never shares a GIL with the server; on
2 cores they still share the CPU, so the client is kept lean (one channel, no per-message work beyond
reading the stream) and its cost is part of every figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.feedback_bench import feedback_bench
from benchmarks.latency import LatencyRecorder, Outcome, closed_loop, open_loop, poisson_schedule
from benchmarks.stalled_client import StalledStreams
from engines.triton.server import free_ports
from protos.ranking.v1 import ranking_pb2_grpc
from server.client import rank_request

CONCURRENCY = (1, 2, 4, 8, 16, 32)
STALLED_STREAMS = 60  # Rank streams a slow client opens and never reads (issue 14)
OPEN_LOOP = (0.5, 0.8, 1.0, 1.2)
# Summary timing fields -> stage names of the breakdown.
STAGES = {"embed_ms": "embed", "retrieve_ms": "ann", "tokenize_ms": "tokenize", "rerank_ms": "triton",
          "fusion_ms": "fusion", "mmr_ms": "mmr", "queue_ms": "queue", "total_ms": "total"}


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (Triton and its Python backend stubs for the server)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(proc.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    target: str

    def rss(self) -> dict[str, int]:
        kids = descendants(self.proc.pid)
        return {"server": rss_bytes(self.proc.pid), "triton": sum(rss_bytes(p) for p in kids)}


@contextlib.contextmanager
def running_server(catalog: Path, model: Path, *, env: dict[str, str] | None = None, log: Path | None = None,
                   startup_timeout_s: float = 240.0, state_dir: Path | None = None
                   ) -> Iterator[ServerProcess]:
    """`rankserve serve` on a free loopback port; SIGTERM (it stops its Triton) then SIGKILL on exit.

    Its feedback log goes to ``state_dir``, by default a temporary folder removed afterwards: a bench
    never writes into the demo's state."""
    port = free_ports(1)[0]
    scratch = None if state_dir is not None else tempfile.TemporaryDirectory(prefix="rankserve-state-")
    state = state_dir if state_dir is not None else Path(scratch.name)  # type: ignore[union-attr]
    cmd = [sys.executable, "-m", "cli.main", "serve", "--catalog", str(catalog), "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--state-dir", str(state)]
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    kids: list[int] = []
    try:
        target = f"127.0.0.1:{port}"
        _wait_serving(target, proc, startup_timeout_s)
        server = ServerProcess(proc, target)
        kids = descendants(proc.pid)
        yield server
    finally:
        kids = kids or descendants(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Triton leads its own process group; it dies with the server, but never leave one behind.
        for pid in kids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if log:
            out.close()
        if scratch is not None:
            scratch.cleanup()


def _wait_serving(target: str, proc: subprocess.Popen, timeout_s: float) -> None:
    async def poll() -> None:
        deadline = time.monotonic() + timeout_s
        async with grpc.aio.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"rankserve exited with code {proc.returncode} before serving")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"rankserve not serving on {target} after {timeout_s:.0f}s")
                await asyncio.sleep(0.25)

    asyncio.run(poll())


def make_call(stub: ranking_pb2_grpc.RankerStub, queries: Sequence[str], *, k: int, candidates: int,
              timeout_s: float) -> Callable[[int], asyncio.Future]:
    """One Rank stream per call: time to first item, status, and the Summary's stage timings."""

    async def call(i: int) -> Outcome:
        t0 = time.perf_counter()
        first = last_item = None
        timings = None
        try:
            async for msg in stub.Rank(rank_request(queries[i % len(queries)], k=k, candidates=candidates),
                                       timeout=timeout_s):
                now = time.perf_counter()
                if msg.HasField("item"):
                    if first is None:
                        first = now - t0
                    last_item = now
                else:
                    if msg.summary.degraded:  # served without the reranker: not the work we measure
                        return Outcome(code="DEGRADED")
                    t = msg.summary.timings
                    timings = {name: getattr(t, field) for field, name in STAGES.items()}
                    # `send` is not in the Summary: the client sees it as first item -> summary.
                    timings["send"] = (now - (t0 + first)) * 1e3 if first is not None else 0.0
        except grpc.aio.AioRpcError as e:
            return Outcome(code=e.code().name)
        del last_item
        return Outcome(first_item_s=first, timings=timings)

    return call


class RssSampler:
    """Peak RSS of server and Triton while a block runs (sampled every `period_s`)."""

    def __init__(self, server: ServerProcess, period_s: float = 0.25) -> None:
        self.server, self.period_s = server, period_s
        self.peak = {"server": 0, "triton": 0}

    async def run(self) -> None:
        while True:
            for name, value in (await asyncio.to_thread(self.server.rss)).items():
                self.peak[name] = max(self.peak[name], value)
            await asyncio.sleep(self.period_s)


async def _overload(call: Callable, server: ServerProcess, rate: float, x: float, duration_s: float,
                    unloaded_p99_ms: float, warm_rss: int) -> dict:
    """Open-loop traffic at ``x`` times saturation: every status with its count, the admitted requests'
    latency against the unloaded p99, and the server's RSS after warm-up and at the end."""
    rec = LatencyRecorder()
    schedule = poisson_schedule(rate, duration_s, seed=4242)
    wall = await open_loop(call, schedule, rec)
    end_rss = server.rss()["server"]
    p99 = rec.percentile_ms(99)
    return {"x_saturation": x, "offered_rps": rate, "sent": len(schedule), "wall_s": wall,
            "codes": dict(rec.codes), "admitted_p50_ms": rec.percentile_ms(50), "admitted_p99_ms": p99,
            "unloaded_p99_ms": unloaded_p99_ms, "p99_vs_unloaded": p99 / unloaded_p99_ms,
            "rss_bytes": {"warm": warm_rss, "end": end_rss}, "rss_growth": end_rss / warm_rss - 1.0,
            "server_alive": server.proc.poll() is None}


async def _slow_clients(call: Callable, server: ServerProcess, queries: Sequence[str], *, concurrency: int,
                        duration_s: float, normal_p99_ms: float, saturation: float, k: int, candidates: int,
                        streams: int = STALLED_STREAMS) -> dict:
    """``streams`` Rank streams that are never read (`StalledStreams`), opened at 0.8× saturation so each
    is admitted and ranked and its whole answer then waits in the server behind a shut window (the
    memory a slow client can pin); then normal clients run a closed loop at ``concurrency`` while they
    are stuck. Reports the normal clients' p99 against ``normal_p99_ms`` (the same loop without stalled
    streams, this run), the server's RSS, and how and when each stalled stream ended (its deadline is
    just past the loop)."""
    host, port = server.target.rsplit(":", 1)
    interval = 1.0 / max(0.8 * saturation, 0.5)
    deadline_s = streams * interval + duration_s + 3.0
    rss_before = server.rss()["server"]
    stalled = await asyncio.to_thread(StalledStreams, host, int(port))
    try:
        for i in range(streams):
            req = rank_request(queries[i % len(queries)], k=k, candidates=candidates).SerializeToString()
            await asyncio.to_thread(stalled.open, req, deadline_s - i * interval)
            await asyncio.sleep(interval)
        pumping = asyncio.create_task(asyncio.to_thread(stalled.pump, duration_s + 6.0))
        rec = LatencyRecorder()
        await closed_loop(call, concurrency, duration_s, rec)
        rss_during = server.rss()["server"]
        await pumping
    finally:
        stalled.close()
    p99 = rec.percentile_ms(99)
    # How long past its own deadline each stream the deadline ended was cut (negative: before it).
    late = [e.seconds - stalled.timeouts[sid] for sid, e in stalled.ended.items()
            if e.how == "reset" or e.grpc_status == "4"]
    how = Counter(f"{e.how} {e.grpc_status}".strip() for e in stalled.ended.values())
    return {"stalled_streams": streams, "opened_per_s": 1.0 / interval, "deadline_s": deadline_s,
            "ended": len(stalled.ended), "ended_how": dict(how),
            "latest_past_deadline_s": max(late, default=None),
            "message_bytes_sent": stalled.data_bytes, "concurrency": concurrency, "codes": dict(rec.codes),
            "p99_ms": p99, "normal_p99_ms": normal_p99_ms, "p99_vs_normal": p99 / normal_p99_ms,
            "rss_bytes": {"before": rss_before, "during": rss_during, "after": server.rss()["server"]},
            "rss_growth": rss_during / rss_before - 1.0}


async def _load(target: str, queries: Sequence[str], server: ServerProcess, *, duration_s: float,
                concurrency: Sequence[int], open_loop_x: Sequence[float], k: int, candidates: int,
                note: Callable[[str], None], overload_x: float | None = None) -> dict:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ranking_pb2_grpc.RankerStub(channel)
        first_ms = await _first_request_ms(stub, queries, k=k, candidates=candidates)
        call = make_call(stub, queries, k=k, candidates=candidates, timeout_s=30.0)
        warm = LatencyRecorder()
        await closed_loop(call, 4, min(duration_s, 2.0), warm)  # warm caches, channel, Triton batching
        idle = server.rss()
        sampler = RssSampler(server)
        sampling = asyncio.create_task(sampler.run())
        closed, recorders = [], {}
        try:
            for c in concurrency:
                note(f"e2e: closed loop, concurrency {c}")
                rec = LatencyRecorder()
                wall = await closed_loop(call, c, duration_s, rec)
                closed.append({"concurrency": c, "wall_s": wall, **rec.summary(wall)})
                recorders[c] = rec
            best = max(closed, key=lambda r: r["qps"])
            saturation = best["qps"]
            opened = []
            for x in open_loop_x:
                rate = max(saturation * x, 0.5)
                note(f"e2e: open loop, {x:g}x saturation = {rate:.1f} req/s")
                rec = LatencyRecorder()
                schedule = poisson_schedule(rate, duration_s, seed=int(x * 100))
                wall = await open_loop(call, schedule, rec)
                summary = rec.summary(wall)
                summary["qps"] = rec.ok / duration_s  # offered window, not the drain after it
                shed = rec.codes.get("RESOURCE_EXHAUSTED", 0)
                opened.append({"x_saturation": x, "offered_rps": len(schedule) / duration_s,
                               "sent": len(schedule), "shed": shed, "shed_share": shed / max(rec.total, 1),
                               **summary})
            overload = None
            if overload_x:
                note(f"e2e: overload, {overload_x:g}x saturation = {saturation * overload_x:.1f} req/s")
                overload = await _overload(call, server, saturation * overload_x, overload_x, duration_s,
                                           closed[0]["p99_ms"], idle["server"])
            note(f"e2e: slow clients, {STALLED_STREAMS} streams never read")
            slow = await _slow_clients(call, server, queries, concurrency=closed[0]["concurrency"],
                                       duration_s=duration_s, normal_p99_ms=closed[0]["p99_ms"],
                                       saturation=saturation, k=k, candidates=candidates)
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
    steady = closed[0]["p50_ms"] if closed else float("nan")
    return {"overload": overload, "slow_clients": slow,
            "cold_start": {"first_request_ms": first_ms, "steady_p50_ms": steady,
                           "concurrency": closed[0]["concurrency"] if closed else None,
                           "ratio": first_ms / steady if steady else float("nan")},
            "closed": closed, "open": opened, "saturation_qps": saturation,
            "saturation_concurrency": best["concurrency"],
            "stages_p50_ms": recorders[best["concurrency"]].stage_p50_ms(),
            "rss_bytes": {"idle": idle, "load_peak": sampler.peak}}


async def _first_request_ms(stub: ranking_pb2_grpc.RankerStub, queries: Sequence[str], *, k: int,
                            candidates: int) -> float:
    """The first request a client sends once the server says SERVING (a query the warm-up did not run,
    past the cache), end to end."""
    t = time.perf_counter()
    async for _ in stub.Rank(rank_request(queries[len(queries) // 2], k=k, candidates=candidates,
                                          bypass_cache=True), timeout=60):
        pass
    return (time.perf_counter() - t) * 1e3


def run_e2e_bench(
    catalog: Path,
    model: Path,
    *,
    duration_s: float = 10.0,
    concurrency: Sequence[int] = CONCURRENCY,
    open_loop_x: Sequence[float] = OPEN_LOOP,
    k: int = 10,
    candidates: int = 100,
    server_env: dict[str, str] | None = None,
    log: Path | None = None,
    note: Callable[[str], None] = lambda _: None,
    overload_x: float | None = None,
) -> dict:
    from catalog.io import load_catalog

    cat = load_catalog(catalog)
    queries, n_items = cat.queries["query"].astype(str).tolist(), len(cat.products)
    note("e2e: starting rankserve + Triton")
    t = time.perf_counter()
    with running_server(catalog, model, env=server_env, log=log) as server:
        startup = time.perf_counter() - t
        out = asyncio.run(_load(server.target, queries, server, duration_s=duration_s,
                                concurrency=concurrency, open_loop_x=open_loop_x, k=k, candidates=candidates,
                                note=note, overload_x=overload_x))
        note("e2e: feedback ingest under ranking load")
        out["feedback"] = asyncio.run(feedback_bench(server.target, queries, items=n_items))
        pids = [server.proc.pid, *descendants(server.proc.pid)]
    out["startup_s"] = startup
    out["candidates"] = candidates
    out["k"] = k
    out["left_running"] = [p for p in pids if Path(f"/proc/{p}").exists() and _alive(p)]
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"

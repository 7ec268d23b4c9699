"""Latency recording and load generation (closed and open loop) for the benchmarks.

Open-loop latency is measured from each request's *scheduled* send time, not from when the client got
round to sending it: a client that falls behind a slow server would otherwise hide the queueing it
caused (coordinated omission). Histograms are HdrHistograms in microseconds (3 significant digits).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from hdrh.histogram import HdrHistogram

_MAX_US = 120_000_000  # 2 minutes: anything slower is a failure, not a latency


def _hist() -> HdrHistogram:
    return HdrHistogram(1, _MAX_US, 3)


@dataclass
class Outcome:
    """What one request produced: its gRPC status name, time to first item, server stage timings."""

    code: str = "OK"
    first_item_s: float | None = None  # seconds after the request started (None: no item arrived)
    timings: dict[str, float] | None = None


@dataclass
class LatencyRecorder:
    """Latencies of successful requests (whole stream and first item) plus counts per status code."""

    latency: HdrHistogram = field(default_factory=_hist)
    first_item: HdrHistogram = field(default_factory=_hist)
    codes: Counter = field(default_factory=Counter)
    timings: list[dict[str, float]] = field(default_factory=list)

    def record(self, latency_s: float, outcome: Outcome | None = None, *, offset_s: float = 0.0) -> None:
        """Record one request. `offset_s` is how late the send was against the schedule; it is added to
        the first-item time too, so both figures count from the scheduled instant."""
        outcome = outcome or Outcome()
        self.codes[outcome.code] += 1
        if outcome.code != "OK":
            return
        self.latency.record_value(_us(latency_s))
        if outcome.first_item_s is not None:
            self.first_item.record_value(_us(outcome.first_item_s + offset_s))
        if outcome.timings:
            self.timings.append(outcome.timings)

    def record_scheduled(self, scheduled_s: float, sent_s: float, done_s: float, outcome: Outcome) -> None:
        """Open loop: latency runs from the scheduled send time, whatever delayed the actual send."""
        self.record(done_s - scheduled_s, outcome, offset_s=sent_s - scheduled_s)

    @property
    def ok(self) -> int:
        return self.codes["OK"]

    @property
    def total(self) -> int:
        return sum(self.codes.values())

    def percentile_ms(self, q: float, *, first_item: bool = False) -> float:
        h = self.first_item if first_item else self.latency
        return h.get_value_at_percentile(q) / 1e3 if h.get_total_count() else float("nan")

    def stage_p50_ms(self) -> dict[str, float]:
        """Median of each server-reported stage over the recorded requests."""
        keys = sorted({k for t in self.timings for k in t})
        return {k: float(np.median([t.get(k, 0.0) for t in self.timings])) for k in keys}

    def summary(self, wall_s: float) -> dict:
        errors = self.total - self.ok
        return {
            "requests": self.total,
            "ok": self.ok,
            "qps": self.ok / wall_s if wall_s > 0 else 0.0,
            "p50_ms": self.percentile_ms(50),
            "p95_ms": self.percentile_ms(95),
            "p99_ms": self.percentile_ms(99),
            "max_ms": self.latency.get_max_value() / 1e3 if self.ok else float("nan"),
            "first_item_p50_ms": self.percentile_ms(50, first_item=True),
            "first_item_p99_ms": self.percentile_ms(99, first_item=True),
            "errors": errors,
            "codes": dict(self.codes),
        }


def _us(seconds: float) -> int:
    return int(min(max(round(seconds * 1e6), 1), _MAX_US))


def uniform_schedule(rate: float, duration_s: float) -> np.ndarray:
    """Send offsets (seconds) at a constant rate."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    return np.arange(int(rate * duration_s)) / rate


def poisson_schedule(rate: float, duration_s: float, seed: int = 0) -> np.ndarray:
    """Send offsets (seconds) of a Poisson process, as independent users arrive, with exactly
    ``round(rate * duration_s)`` arrivals (at least one): given their count, a Poisson process's arrival
    times are uniform and independent. So the rate offered is the rate asked for, not one draw of it
    (in an 8 s window a free count ran from 0.85 to 1.46 times the rate: "1.0x saturation" was 1.13x)."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    rng = np.random.default_rng(seed)
    return np.sort(rng.uniform(0.0, duration_s, size=max(1, round(rate * duration_s))))


Call = Callable[[int], Awaitable[Outcome]]


async def closed_loop(call: Call, concurrency: int, duration_s: float, recorder: LatencyRecorder,
                      *, shed_backoff_s: float = 0.05) -> float:
    """`concurrency` workers send back to back for `duration_s`; returns the wall time (s) until all finish.

    Worker w sends request numbers w, w + concurrency, ... so callers can rotate through queries. A shed
    request (RESOURCE_EXHAUSTED) is retried after `shed_backoff_s`, as a real client backs off: resending
    at once turns the load generator into a busy loop that steals the server's CPU.
    """
    start = time.perf_counter()
    stop_at = start + duration_s

    async def worker(w: int) -> None:
        i = w
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            outcome = await call(i)
            recorder.record(time.perf_counter() - t, outcome)
            i += concurrency
            if outcome.code == "RESOURCE_EXHAUSTED" and shed_backoff_s > 0:
                await asyncio.sleep(shed_backoff_s)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return time.perf_counter() - start


async def open_loop(call: Call, schedule: np.ndarray, recorder: LatencyRecorder) -> float:
    """Send request i at `schedule[i]` seconds whatever is still in flight; returns the wall time (s).

    Every request is its own task, so a slow response never delays later sends; if the event loop itself
    falls behind, the lateness is charged to the request (latency counts from the scheduled time).
    """
    start = time.perf_counter()
    tasks: list[asyncio.Task] = []

    async def one(i: int, scheduled: float) -> None:
        sent = time.perf_counter()
        outcome = await call(i)
        recorder.record_scheduled(scheduled, sent, time.perf_counter(), outcome)

    for i, offset in enumerate(schedule):
        scheduled = start + float(offset)
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - start

"""What reading profiles back from the log costs the feedback path (feedback.hub, feedback.log).

A user whose profile is not held is read back from the log when they search (on the log's reader
connection, beside the commits) and their profile rebuilt on the event loop, which also runs the
commits' callbacks. Under many cold users both compete with ingest. Measured in process over a real
SQLite log with full sync: the same ingest (``streams`` concurrent writers, fixed batches, a search started
with every ten events) once while the searches come from users whose profiles are held (hot), and once
while they cycle through far more users than the cache holds, so nearly every search is a read (cold).
Budgets are counts of batches and searches, not seconds; what to read is the ratio of the two phases,
measured in the same run.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from feedback.events import Event, EventType
from feedback.hub import FeedbackHub, open_hub
from feedback.policy import Policy
from feedback.profile import ItemColumns

ITEMS = 512
KINDS = (EventType.IMPRESSION, EventType.IMPRESSION, EventType.IMPRESSION, EventType.CLICK)
# A search shows ten items, and each shown item comes back as an impression: about one search per ten
# events reaching the log.
EVENTS_PER_SEARCH = 10


def _items(n: int, rng: np.random.Generator) -> ItemColumns:
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    classes = [f"class {i % 40}" for i in range(n)]
    values = [f"color:{('red', 'blue', 'oak')[i % 3]}" for i in range(n)]
    return ItemColumns.of(vectors, classes, rng.uniform(5, 500, n), values)


def _events(prefix: str, n: int, users: int, rng: random.Random, t0_ms: int) -> list[Event]:
    return [Event(f"{prefix}-{i}", f"{prefix}-r{i // 10}", f"u{rng.randrange(users)}",
                  rng.randrange(ITEMS), KINDS[i % 4], i % 10 + 1, t0_ms + i) for i in range(n)]


async def _phase(hub: FeedbackHub, name: str, *, users: int, searched: int, streams: int, batches: int,
                 batch: int, seed: int) -> dict:
    """``streams`` writers each commit ``batches`` batches of ``batch`` events; with each batch a writer
    starts ``batch // EVENTS_PER_SEARCH`` searches (not awaited: other requests) for users ``0 ..
    searched - 1`` in turn. The same work in every phase; only whether a search must read differs."""
    rng = random.Random(seed)
    order = list(range(searched))
    rng.shuffle(order)
    acks: list[float] = []
    searches: list[asyncio.Task] = []
    reads_before = hub.loads

    async def writer(s: int) -> None:
        for b in range(batches):
            events = _events(f"{name}-{s}-{b}", batch, users, rng, 1_000_000 * (seed + 1))
            for _ in range(max(batch // EVENTS_PER_SEARCH, 1)):
                user = f"u{order[len(searches) % searched]}"
                searches.append(asyncio.create_task(hub.profile_for(user, (), 0)))
            t = time.perf_counter()
            await hub.ingest(events)
            acks.append(time.perf_counter() - t)

    t = time.perf_counter()
    await asyncio.gather(*(writer(s) for s in range(streams)))
    ingest_seconds = time.perf_counter() - t
    waiting = sum(not s.done() for s in searches)
    await asyncio.gather(*searches)
    # The phase ends when its searches have their profiles too: timing the writers alone would reward a
    # slow read path, whose reads are left queued when the writers finish.
    seconds = time.perf_counter() - t
    ms = np.array(acks) * 1e3
    return {"events": streams * batches * batch, "seconds": seconds,
            "events_per_s": streams * batches * batch / seconds, "ingest_seconds": ingest_seconds,
            "searches_waiting_after_ingest": waiting, "ack_p50_ms": float(np.percentile(ms, 50)),
            "ack_p99_ms": float(np.percentile(ms, 99)), "searches": len(searches),
            "profile_reads": hub.loads - reads_before}


async def _run(state: Path, *, users: int, history: int, capacity: int, streams: int, batches: int,
               batch: int, seed: int) -> dict:
    hub = open_hub(state, _items(ITEMS, np.random.default_rng(seed)), policy=Policy(bandit=False),
                   capacity=capacity)
    try:
        rng = random.Random(seed)
        seed_events = _events("history", users * history, users, rng, 0)
        for k in range(0, len(seed_events), 2000):  # every user has a history to read back
            await hub.ingest(seed_events[k:k + 2000])
        common = {"users": users, "streams": streams, "batches": batches, "batch": batch}
        hot = min(capacity // 2, users)
        for u in range(hot):  # held before the hot phase starts
            await hub.profile_for(f"u{u}", (), 0)
        out = {"hot": await _phase(hub, "hot", searched=hot, seed=seed + 1, **common),
               "cold": await _phase(hub, "cold", searched=users, seed=seed + 2, **common)}
    finally:
        hub.close()
    out["cold_vs_hot_events_per_s"] = out["cold"]["events_per_s"] / out["hot"]["events_per_s"]
    out["cold_vs_hot_ack_p99"] = out["cold"]["ack_p99_ms"] / out["hot"]["ack_p99_ms"]
    out["config"] = {"users": users, "history_per_user": history, "capacity": capacity,
                     "streams": streams, "batches": batches, "batch": batch,
                     "events_per_search": EVENTS_PER_SEARCH}
    return out


def profile_read_bench(*, users: int = 2000, history: int = 40, capacity: int = 200, streams: int = 4,
                       batches: int = 100, batch: int = 20, seed: int = 0,
                       state_dir: Path | None = None) -> dict:
    """Hot and cold phases over one fresh log (in ``state_dir``, or a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="rankserve-profile-reads-") as tmp:
        return asyncio.run(_run(Path(state_dir or tmp), users=users, history=history, capacity=capacity,
                                streams=streams, batches=batches, batch=batch, seed=seed))

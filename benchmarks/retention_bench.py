"""What retention buys and costs (feedback.retention), on a real SQLite log with full sync.

A log of ``lists`` served lists (a decision and ten impressions each, a click on a third of them), a
share ``old`` of them older than the cutoff. Measured in one run: a server's start (the policy rebuilt
from the log, `open_hub`) before compaction, the compaction itself (found on one connection, deleted
``batch`` lists per transaction: how long one holds ingest back), and the
start after it; and that both starts count the same. What to read is the ratio of the two starts and
the events replayed; the seconds depend on the machine.

    python -m benchmarks.retention_bench --lists 100000 --json retention.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from feedback.events import Event, EventType
from feedback.hub import open_hub
from feedback.policy import Policy
from feedback.profile import ItemColumns
from feedback.retention import COMPACT_BATCH, FIND_BATCH, fold
from feedback.store import open_store

SHOWN = 10  # impressions per list


def _fill(state: Path, lists: int, old: float, now_ms: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store, policy = open_store(state, sync="normal"), Policy()
    try:
        for start in range(0, lists, 1000):
            events, decisions = [], []
            for r in range(start, min(start + 1000, lists)):
                rid, user = f"list-{r}", f"user-{r % 5000}"
                at = 1_000 + r if rng.random() < old else now_ms + 10**9 + r  # 1970, or in 12 days
                decisions.append(policy.draw(rid, user, int(rng.integers(0, 30))))
                events += [Event(f"{rid}-i{p}", rid, user, int(rng.integers(0, 512)), EventType.IMPRESSION,
                                 p, at) for p in range(1, SHOWN + 1)]
                if rng.random() < 1 / 3:
                    events.append(Event(f"{rid}-c", rid, user, 1, EventType.CLICK, 1, at + 1))
            store.append(events, decisions)
    finally:
        store.close()


def _start(state: Path, items: ItemColumns) -> tuple[float, dict]:
    t0 = time.perf_counter()
    hub = open_hub(state, items, policy=Policy(), capacity=10)
    seconds = time.perf_counter() - t0
    counts, events = hub.policy.counts(), hub.log.store.stats().events
    hub.close()
    return seconds, {"counts": counts, "events": events}


def retention_bench(*, lists: int = 20_000, old: float = 0.9, batch: int = COMPACT_BATCH, seed: int = 0,
                    state_dir: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        state = state_dir or Path(tmp)
        now_ms = int(time.time() * 1e3)
        _fill(state, lists, old, now_ms, seed)
        # Every decision was committed just now: the cutoff sits after them, and between the old
        # events and the recent ones.
        cutoff = int(time.time() * 1e3) + 1
        rng = np.random.default_rng(seed)
        items = ItemColumns.of(rng.standard_normal((512, 8)).astype(np.float32), ["c"] * 512,
                               np.ones(512), [""] * 512)
        start_before, before = _start(state, items)
        store = open_store(state)
        took: list[float] = []
        compacted, t0 = 0, time.perf_counter()
        try:
            while ids := store.expired_lists(cutoff, FIND_BATCH):
                for i in range(0, len(ids), batch):
                    t1 = time.perf_counter()
                    compacted += store.compact(ids[i : i + batch], cutoff, fold).lists
                    took.append(time.perf_counter() - t1)
        finally:
            store.close()
        compact_s = time.perf_counter() - t0
        start_after, after = _start(state, items)
    return {
        "lists": lists, "old_share": old, "lists_compacted": compacted,
        "events_before": before["events"], "events_after": after["events"],
        "start_seconds_before": start_before, "start_seconds_after": start_after,
        "start_after_vs_before": start_after / start_before,
        "compaction_seconds": compact_s, "transactions": len(took),
        "transaction_p50_ms": float(np.median(took)) * 1e3 if took else 0.0,
        "longest_transaction_ms": max(took, default=0.0) * 1e3, "batch": batch,
        "same_counts": after["counts"] == before["counts"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lists", type=int, default=100_000)
    ap.add_argument("--old", type=float, default=0.9, help="Share of the lists older than the cutoff.")
    ap.add_argument("--batch", type=int, default=COMPACT_BATCH)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = retention_bench(lists=args.lists, old=args.old, batch=args.batch)
    text = json.dumps(out, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

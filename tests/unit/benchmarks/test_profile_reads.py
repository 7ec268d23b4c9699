"""The profile-read bench does what its report says: the same ingest in both phases, no reads while the
searched users are held, a read for nearly every search when they are not, and every event committed."""

from __future__ import annotations

from pathlib import Path

from benchmarks.profile_reads import EVENTS_PER_SEARCH, profile_read_bench
from feedback.store import open_store


def test_hot_searches_never_read_and_cold_ones_read_the_log(tmp_path: Path) -> None:
    users, history, streams, batches, batch = 300, 5, 2, 10, 20
    r = profile_read_bench(users=users, history=history, capacity=20, streams=streams, batches=batches,
                           batch=batch, state_dir=tmp_path)
    searches = streams * batches * (batch // EVENTS_PER_SEARCH)
    for phase in ("hot", "cold"):
        assert r[phase]["events"] == streams * batches * batch and r[phase]["searches"] == searches
        assert r[phase]["events_per_s"] > 0 and 0 < r[phase]["ack_p50_ms"] <= r[phase]["ack_p99_ms"]
        # A phase ends when its searches have their profiles, not when its writers finish.
        assert r[phase]["ingest_seconds"] <= r[phase]["seconds"]
        assert r[phase]["events_per_s"] == r[phase]["events"] / r[phase]["seconds"]
        assert 0 <= r[phase]["searches_waiting_after_ingest"] <= searches
    assert r["hot"]["profile_reads"] == 0
    # 300 users in turn through a cache of 20: a user comes round again only after 280 others.
    assert r["cold"]["profile_reads"] == searches
    assert r["cold_vs_hot_events_per_s"] == r["cold"]["events_per_s"] / r["hot"]["events_per_s"]
    store = open_store(tmp_path, read_only=True)
    assert store.stats().events == users * history + 2 * streams * batches * batch  # every ack is durable
    store.close()

"""The retention bench measures what it says: the old share of the lists compacted, the recent ones
replayed after, and the same counts from both starts."""

from __future__ import annotations

from benchmarks.retention_bench import SHOWN, retention_bench


def test_the_bench_compacts_the_old_lists_and_both_starts_agree() -> None:
    r = retention_bench(lists=400, old=0.75, batch=64)
    assert 250 < r["lists_compacted"] < 350  # ~ 75% of 400, drawn
    kept = r["lists"] - r["lists_compacted"]
    assert kept * SHOWN <= r["events_after"] <= kept * (SHOWN + 1)
    assert r["events_before"] >= r["lists"] * SHOWN
    assert r["same_counts"] is True
    assert r["start_after_vs_before"] == r["start_seconds_after"] / r["start_seconds_before"]
    assert r["transactions"] == -(-r["lists_compacted"] // 64)  # all found in one read: full batches
    assert 0 < r["transaction_p50_ms"] <= r["longest_transaction_ms"] <= r["compaction_seconds"] * 1e3

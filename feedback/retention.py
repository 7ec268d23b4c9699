"""Retention: lists older than the retention period leave the log, and what the policy learnt from them
stays.

The log is the policy's checkpoint (feedback.policy), so without retention a server's start replays
every list it ever served, and the log grows without bound. Compaction deletes whole lists, a list's
decision with all its events, once the newest of them is older than the cutoff, and adds what a replay
of those lists would have counted (bandit trials and rewards, randomised clicks by position,
impressions and clicks by arm: `PolicyCounts`, all sums) to the counts kept in the log. A start then
rebuilds from the kept counts plus the lists still logged, and ends where a replay of the whole log would
have: a list is counted once, in the log or in the counts, never split between the two.

What does not survive: a user's deleted events leave their profile, which by then held them at
2^-(retention / half-life) of their weight (90 days at a 7-day half-life: 1/7,000), and leave the
profile's interaction count (the bandit's context); an event id older than the cutoff is no longer
known, so a replay of it that old is taken as new, and a request id reused after its list was deleted
is a new list; feedback on a deleted list finds no decision, as feedback on a list beyond the tracked
window does; and a click more than the tracked window's impressions after its impression, which a
whole-log replay would no longer match to it, is counted when both are folded together.
"""

from __future__ import annotations

from dataclasses import dataclass

from feedback.events import Compacted, Event
from feedback.policy import Decision, Policy, PolicyCounts
from feedback.store import EventStore

DAY_MS = 86_400_000
# Lists one transaction deletes: a compaction runs on the writer's thread between commits, so each of
# its transactions holds ingest back. 100: a median 8-10 ms per transaction against 49 ms at 500, in
# the same total time (benchmarks/retention_bench.py, docs/personalization.md).
COMPACT_BATCH = 100
# Lists one read finds: the read runs on the log's reader, beside the commits.
FIND_BATCH = 20_000


@dataclass(frozen=True)
class Retention:
    """Keep lists whose newest decision or event is younger than ``days`` (0: keep everything),
    compacting every ``every_s`` seconds while the server runs."""

    days: float = 90.0
    every_s: float = 3600.0

    def cutoff_ms(self, now_ms: int) -> int | None:
        return None if self.days <= 0 else now_ms - int(self.days * DAY_MS)


def fold(kept: str | None, decisions: list[Decision], events: list[tuple[Event, Decision | None]]) -> str:
    """The `EventStore.compact` fold: the lists replayed into a blank policy, their counts added to those
    kept so far. Always with the bandit: what is kept must not depend on the settings of whoever
    compacts (a server with the bandit off, a CronJob), and a policy without one ignores its counts."""
    blank = Policy()
    blank.rebuild(decisions, events)
    counts = blank.counts()
    return (counts if kept is None else PolicyCounts.from_json(kept) + counts).to_json()


def kept_counts(store: EventStore) -> PolicyCounts | None:
    text = store.kept()
    return None if text is None else PolicyCounts.from_json(text)


def compact_all(store: EventStore, before_ms: int, *, batch: int = COMPACT_BATCH, limit: int = FIND_BATCH
                ) -> Compacted:
    """Compact every expired list on one connection, found ``limit`` at a time and deleted ``batch``
    per transaction (the command line's compaction; a server finds them on its reader and deletes them
    on its writer, `FeedbackHub.compact`)."""
    done = Compacted()
    while True:
        ids = store.expired_lists(before_ms, limit)
        for i in range(0, len(ids), batch):
            done += store.compact(ids[i : i + batch], before_ms, fold)
        if len(ids) < limit:
            return done

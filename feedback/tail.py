"""Follow a shared log: what the other replicas commit reaches this replica's policy and profiles.

With the PostgreSQL log several replicas write one log. Each learns its own commits as it makes them
(`FeedbackHub.learn`); `LogTail` reads the rows the others committed, so a click that the gateway sends
to another replica than the one that ranked the list still rewards that list's arm, and reaches the
user's profile on the replica that holds it.

PostgreSQL hands out ``seq`` at insert, not at commit, so a transaction can become visible after one
with a higher seq. Each read therefore goes back ``lookback`` positions behind the highest it has seen
(the store's `reorder_window`: 0 for SQLite, whose writers take turns), and an event already learnt (by
id: this replica's own commits, the start's replay, earlier reads) is skipped. A transaction that
becomes visible more than ``lookback`` positions late is learnt at the next start, by the replay.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from feedback.events import Event
from feedback.policy import Decision
from feedback.store import EventStore

READ_LIMIT = 10_000  # rows of each table per read: a replica far behind catches up over several reads
LEARNT_IDS = 4 * READ_LIMIT  # event ids remembered as learnt: more than one read's look back and rows


class RecentIds:
    """The ids of the ``capacity`` most recently learnt events: a bounded set."""

    def __init__(self, capacity: int = LEARNT_IDS) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; False when it was already there (learnt: skip it)."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._ids)


@dataclass
class LogTail:
    """Where this replica has read the log up to: the highest event and decision positions seen."""

    events_seq: int
    decisions_seq: int
    lookback: int = 0
    limit: int = READ_LIMIT

    def __post_init__(self) -> None:
        if self.limit <= self.lookback:
            raise ValueError(f"limit ({self.limit}) must exceed lookback ({self.lookback}) to make progress")

    def read(self, store: EventStore) -> tuple[list[Event], list[Decision]]:
        """The events and decisions past the marks (less the look back), in log order; moves the marks.
        Runs on the log's reader thread: the marks are only ever touched there."""
        events, decisions = store.since(max(0, self.events_seq - self.lookback),
                                        max(0, self.decisions_seq - self.lookback), self.limit)
        if events:
            self.events_seq = max(self.events_seq, events[-1][0])
        if decisions:
            self.decisions_seq = max(self.decisions_seq, decisions[-1][0])
        return [e for _, e in events], [d for _, d in decisions]

"""Follow a shared log: what the other replicas commit reaches this replica's policy and profiles.

With the PostgreSQL log several replicas write one log. Each learns its own commits as it makes them;
`LogTail` reads the rows past where it has read, so a click that the gateway sends to another replica
than the one that ranked the list still rewards that list's arm, and reaches the user's profile on the
replica that holds it (`FeedbackHub.catch_up`).

Rows are told apart by their log position (``seq``), never by a bounded memory of ids: the replica's own
commits claim theirs before they commit (`OwnPositions`, so no read can see a row before it is known),
and the start's replay and every read mark theirs as seen here.
PostgreSQL hands ``seq`` out at insert, not at commit, so a transaction can become visible after one with
a higher seq. Each read therefore goes back ``lookback`` positions behind the highest it has seen (the
store's `reorder_window`: 0 for SQLite, whose writers take turns) and skips the positions it delivered
already. A transaction visible more than ``lookback`` positions late is learnt at the next start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from feedback.events import Event
from feedback.policy import Decision
from feedback.store import EventStore

logger = logging.getLogger(__name__)

READ_LIMIT = 10_000  # rows of each table per read; a caller reads again while pages come back full
# Own positions kept at most (only reached if reads keep failing while commits go on): the oldest go.
OWN_LIMIT = 1_000_000


class OwnPositions:
    """This replica's commits' positions, claimed on the writer's thread before each commit and read on
    the reader's: a read of the log never delivers them back. Claims count only once `active`."""

    def __init__(self) -> None:
        self.active = False
        self._lock = threading.Lock()
        self._seqs: set[int] = set()

    def claim(self, seqs: Sequence[int]) -> None:
        if not self.active or not seqs:
            return
        with self._lock:
            self._seqs.update(seqs)
            if len(self._seqs) > OWN_LIMIT:
                self._seqs = set(sorted(self._seqs)[OWN_LIMIT // 2 :])

    def others(self, rows: list[tuple], floor: int) -> list[tuple]:
        """The rows this replica did not commit; forgets its positions at or below ``floor``."""
        with self._lock:
            out = [r for r in rows if int(r[0]) not in self._seqs]
            self._seqs = {s for s in self._seqs if s > floor}
        return out

    def __len__(self) -> int:
        return len(self._seqs)


@dataclass
class _Positions:
    """The highest position read, and the positions delivered in the look-back window below it."""

    high: int
    lookback: int
    seen: set[int] = field(default_factory=set)

    @property
    def floor(self) -> int:
        """Positions at or below this are never read again."""
        return max(0, self.high - self.lookback)

    def fresh(self, rows: list[tuple]) -> list[tuple]:
        """The rows not delivered before; moves the high mark and forgets what falls below the floor."""
        out = [r for r in rows if int(r[0]) not in self.seen]
        self.seen.update(int(r[0]) for r in out)
        if rows:
            self.high = max(self.high, int(rows[-1][0]))
        self.seen = {s for s in self.seen if s > self.floor}
        return out


@dataclass
class TailRead:
    """One read: the events (with their positions) and decisions not delivered before, other replicas'."""

    events: list[tuple[int, Event]]
    decisions: list[Decision]
    full: bool  # a page came back full: more may be waiting


class LogTail:
    """Where this replica has read the log up to. `read` runs on one thread at a time (the log's
    reader), and `mark_seen` only before the first read."""

    def __init__(self, events_seq: int, decisions_seq: int, *, lookback: int = 0,
                 limit: int = READ_LIMIT) -> None:
        if limit <= lookback:
            raise ValueError(f"limit ({limit}) must exceed lookback ({lookback}) to make progress")
        self.events = _Positions(events_seq, lookback)
        self.decisions = _Positions(decisions_seq, lookback)
        self.limit = limit
        self.own = OwnPositions()
        self.skipped = 0  # rows that could not be read (e.g. an event type a newer replica wrote)

    def mark_seen(self, seq: int) -> None:
        """The start's replay learnt the event at ``seq``: a read must not deliver it again."""
        if seq > self.events.floor:
            self.events.seen.add(seq)

    def read(self, store: EventStore) -> TailRead:
        """Decisions first, and events only once the decisions are caught up: an event read before its
        list's decision would be learnt as an undecided list's, its reward lost. The look back asks only
        for the positions not delivered yet."""
        rows, full = self._page(store, "decisions", self.decisions)
        decisions = [d for r in rows if (d := self._parse(Decision, r))]
        if full:
            return TailRead([], decisions, True)  # type: ignore[arg-type]
        rows, full = self._page(store, "events", self.events)
        events = [(int(r[0]), e) for r in self.own.others(rows, self.events.floor)
                  if (e := self._parse(Event, r))]
        return TailRead(events, decisions, full)  # type: ignore[arg-type]

    def _page(self, store: EventStore, table: str, marks: _Positions) -> tuple[list[tuple], bool]:
        """The table's rows not delivered yet, and whether the page came back full."""
        rows = store.since(table, marks.floor, self.limit, sorted(marks.seen))
        return marks.fresh(rows), len(rows) == self.limit

    def _parse(self, kind: type[Event] | type[Decision], row: tuple) -> Event | Decision | None:
        try:
            return kind.from_row(row[1:])
        except (ValueError, TypeError, IndexError) as exc:
            self.skipped += 1
            logger.warning("feedback log: skipped %s at position %s that cannot be read: %s",
                           kind.__name__, row[0], exc)
            return None

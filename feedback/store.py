"""The durable event log's interface: one implementation per database, chosen by `open_store`.

A store commits a batch in one transaction and reports which events were new: an ``event_id`` already
in the log is a duplicate and changes nothing (idempotent replays). `replay` yields every committed
event in commit order, `replay_decisions` the policy's logged decisions, and `replay_decided` the events
each with its list's decision: how the bandit and the position propensities are rebuilt on start;
`users_rows` some users' events, how their profiles are rebuilt when requests need them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from feedback.events import AppendResult, Compacted, Event, EventRow, LogStats, StoreUnavailable
from feedback.policy import Decision
from feedback.queries import Fold


class EventStore(Protocol):
    # Positions (``seq``) by which a commit may become visible after a later one: 0 where writers take
    # turns (SQLite), more where a sequence hands positions out at insert (PostgreSQL; feedback.tail).
    reorder_window: int

    def append(self, events: Sequence[Event], decisions: Sequence[Decision] = (), *,
               claim: Callable[[list[int]], None] | None = None) -> AppendResult:
        """Commit in one transaction. ``claim`` is called with the new events' positions before the
        commit, so no reader can see them before it knows them (feedback.tail)."""
        ...

    def replay(self) -> Iterator[Event]: ...

    def users_rows(self, user_ids: Sequence[str], limit: int | None = None) -> dict[str, list[EventRow]]:
        """Each user's committed events in commit order, the newest ``limit`` of them (None: all; one
        indexed query; [] for a user without any): how profiles are rebuilt on demand. Rows, not `Event`
        objects: the read runs beside ingest and holds the GIL while it builds them."""
        ...

    def replay_decisions(self) -> Iterator[Decision]: ...

    def replay_decided(self) -> Iterator[tuple[int, Event, Decision | None]]:
        """`replay`, each event with its position and the logged decision of its request (None: an
        undecided list)."""
        ...

    def since(self, table: str, after: int, limit: int, skip: Sequence[int] = ()) -> list[tuple]:
        """Up to ``limit`` rows of ``table`` ("events" or "decisions") past position ``after``, less the
        positions in ``skip``, in order, each its position and then its columns: how a replica follows
        what the others commit to a shared log (feedback.tail parses them)."""
        ...

    def consistent_reads(self) -> AbstractContextManager[None]:
        """Reads inside see one snapshot of the log (the start's marks and replays agree)."""
        ...

    def high_water(self) -> tuple[int, int]:
        """The highest event and decision positions committed (0: none)."""
        ...

    def expired_lists(self, before_ms: int, limit: int) -> list[str]:
        """Up to ``limit`` lists (request ids) whose decision and every event are older than
        ``before_ms`` (event time; a decision's, when it was committed)."""
        ...

    def compact(self, request_ids: Sequence[str], before_ms: int, fold: Fold) -> Compacted:
        """In one transaction: of ``request_ids``, the lists still wholly older than ``before_ms`` are
        passed to ``fold`` with the counts kept so far, its result is kept in their place, and their
        decisions and events are deleted."""
        ...

    def kept(self) -> str | None:
        """What `compact` kept of the lists it deleted (None: nothing deleted yet)."""
        ...

    def stats(self) -> LogStats: ...

    def close(self) -> None: ...


__all__ = ["EventStore", "Fold", "StoreUnavailable", "open_store"]


def open_store(state_dir: Path, *, sync: str = "full", read_only: bool = False, dsn: str | None = None
               ) -> EventStore:
    """The shared PostgreSQL log when ``dsn`` is given (several replicas), else the embedded SQLite log
    under ``state_dir`` (the default)."""
    if dsn:
        from feedback.postgres_store import PostgresEventStore

        return PostgresEventStore(dsn)
    from feedback.sqlite_store import SqliteEventStore

    return SqliteEventStore(Path(state_dir) / "events.sqlite", sync=sync, read_only=read_only)

"""The event store contract, run against both stores (SQLite, and a real PostgreSQL server), and what
only the SQLite store promises (WAL, full sync, read-only opening)."""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from feedback.events import Event, EventType
from feedback.policy import Decision
from feedback.sqlite_store import SqliteEventStore
from feedback.store import EventStore, StoreUnavailable, open_store
from tests.postgres import fresh_database

Opener = Callable[[], EventStore]


def event(i: int, user: str = "u1", type_: EventType = EventType.CLICK) -> Event:
    return Event(f"e{i}", "r1", user, item_id=i % 7, type=type_, position=i % 10 + 1, timestamp_ms=1000 + i)


def test_append_commits_and_counts_replays_as_duplicates(opener: Opener) -> None:
    store = opener()
    first = store.append([event(i) for i in range(5)])
    assert first.accepted == 5 and first.duplicates == 0
    again = store.append([event(3), event(4), event(5)])
    assert [e.event_id for e in again.new] == ["e5"] and again.duplicates == 2
    inside = store.append([event(9), event(9)])  # the same id twice in one batch: new once
    assert inside.accepted == 1 and inside.duplicates == 1
    stats = store.stats()
    assert (stats.events, stats.duplicates, stats.users) == (7, 3, 1)
    assert stats.by_type == {"CLICK": 7}


def test_committed_events_survive_reopening_in_commit_order(opener: Opener) -> None:
    store = opener()
    store.append([event(2, "a", EventType.PURCHASE), event(1, "b")])
    store.append([event(0, "", EventType.IMPRESSION)])
    store.close()
    reopened = opener()
    assert [e.event_id for e in reopened.replay()] == ["e2", "e1", "e0"]
    assert next(iter(reopened.replay())) == event(2, "a", EventType.PURCHASE)
    stats = reopened.stats()
    assert stats.users == 2  # an empty user_id is nobody
    assert stats.by_type == {"IMPRESSION": 1, "CLICK": 1, "PURCHASE": 1}


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    with closing(SqliteEventStore(tmp_path / "events.sqlite")) as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with pytest.raises(ValueError, match="sync"):
        SqliteEventStore(tmp_path / "x.sqlite", sync="sometimes")


def test_a_failed_transaction_commits_nothing(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.sqlite")
    store.append([event(0)])
    # Another writer holds the write lock: the append cannot begin, and must leave nothing behind.
    with closing(store), closing(sqlite3.connect(tmp_path / "events.sqlite", timeout=0,
                                                 isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        store._db.execute("PRAGMA busy_timeout=50")
        with pytest.raises(StoreUnavailable, match=r"events\.sqlite"):
            store.append([event(1), event(2)])
        other.execute("ROLLBACK")
        assert store.stats().events == 1
        assert store.append([event(1)]).accepted == 1


def test_a_log_that_cannot_be_opened_releases_its_lock(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(sqlite3.DatabaseError) as failed:
        SqliteEventStore(path)
    # The traceback (kept by pytest.raises) still references the half-built store: its lock must
    # already be released, or every later open in this process waits on a file nobody will close.
    assert failed.value.__traceback__ is not None
    with open(path.with_name("events.sqlite.lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError while it is held


def test_read_only_store_reads_and_refuses_a_missing_log(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_store(tmp_path / "none", read_only=True)
    with closing(open_store(tmp_path)) as store, closing(open_store(tmp_path, read_only=True)) as reader:
        store.append([event(0)])
        assert reader.stats().events == 1
        with pytest.raises(StoreUnavailable):
            reader.append([event(1)])


def test_replicas_share_one_postgres_log(postgres_dsn: str) -> None:
    dsn = fresh_database(postgres_dsn, "replicas")
    a, b = open_store(Path("unused"), dsn=dsn), open_store(Path("unused"), dsn=dsn)
    assert a.append([event(1), event(2)]).accepted == 2
    replayed = b.append([event(2), event(3)])  # e2 came in through the other replica
    assert [e.event_id for e in replayed.new] == ["e3"] and replayed.duplicates == 1
    assert [e.event_id for e in a.replay()] == ["e1", "e2", "e3"]
    assert a.stats().duplicates == b.stats().duplicates == 1
    a.close()
    b.close()


def test_users_rows_reads_each_users_events_in_commit_order(opener: Opener) -> None:
    store = opener()
    store.append([event(i, user="a" if i % 3 else "b") for i in range(12)])
    store.append([event(20, user="b"), event(2, user="a")])  # e2 is a replay: not stored twice
    rows = store.users_rows(["b", "nobody", "a"])
    assert list(rows) == ["b", "nobody", "a"] and rows["nobody"] == []
    assert [row[0] for row in rows["b"]] == ["e0", "e3", "e6", "e9", "e20"]
    assert [row[0] for row in rows["a"]] == ["e1", "e2", "e4", "e5", "e7", "e8", "e10", "e11"]
    assert tuple(rows["b"][1]) == event(3, user="b").row()  # every field round-trips
    assert store.users_rows(["b"]) == {"b": rows["b"]}
    # The newest rows of each user, still in commit order; a limit past the history takes it all.
    newest = store.users_rows(["a", "b", "nobody", "a"], limit=3)
    assert list(newest) == ["a", "b", "nobody"] and newest["nobody"] == []
    assert [row[0] for row in newest["a"]] == ["e8", "e10", "e11"]
    assert [row[0] for row in newest["b"]] == ["e6", "e9", "e20"]
    assert tuple(newest["b"][0]) == event(6, user="b").row()
    assert store.users_rows(["a"], limit=100) == {"a": rows["a"]}


def test_users_rows_with_a_limit_reads_many_users_at_once(opener: Opener) -> None:
    store = opener()
    store.append([event(i, user=f"u{i % 450}") for i in range(900)])  # more users than one SQL union
    rows = store.users_rows([f"u{k}" for k in range(450)], limit=1)
    assert [r[0][0] for r in rows.values()] == [f"e{k + 450}" for k in range(450)]


def test_replay_decided_joins_each_event_to_its_lists_decision(opener: Opener) -> None:
    store = opener()
    decided = Decision("r1", "u1", 2, 1, 0.5, True)
    events = [event(1), Event("e2", "r-none", "u1", 3, EventType.CLICK, 1, 5)]
    store.append(events[:1], [decided])
    store.append(events[1:], [Decision("r-other", "u2", 0, 0, 0.0, False)])
    rows = list(opener().replay_decided())
    assert [(e, d) for _, e, d in rows] == [(events[0], decided), (events[1], None)]
    assert rows[0][0] < rows[1][0]  # with their log positions, in commit order


def test_append_claims_its_positions_before_the_commit_and_since_reads_past_one(opener: Opener) -> None:
    store, reader = opener(), opener()
    claimed: list[list[int]] = []

    def claim(seqs: list[int]) -> None:
        visible = {int(r[0]) for r in reader.since("events", 0, 100)}
        assert seqs and not visible & set(seqs)  # claimed before any reader can see the rows
        claimed.append(list(seqs))

    store.append([event(1), event(2)], claim=claim)
    store.append([event(2), event(3)], [Decision("r9", "u1", 0, 0, 0.0, False)], claim=claim)
    first, again = claimed
    assert len(first) == 2 and first[0] < first[1] < again[0] and len(again) == 1  # e2 was a replay
    rows = reader.since("events", first[0], 10)
    assert [int(r[0]) for r in rows] == [first[1], again[0]] and rows[-1][1] == "e3"
    assert [int(r[0]) for r in reader.since("events", 0, 10, skip=[first[1]])] == [first[0], again[0]]
    decisions = reader.since("decisions", 0, 10)
    assert [Decision.from_row(r[1:]).request_id for r in decisions] == ["r9"]
    assert reader.high_water() == (again[0], int(decisions[0][0]))
    assert [int(r[0]) for r in reader.since("events", 0, 1)] == [first[0]]  # at most ``limit`` rows


def test_consistent_reads_keep_one_snapshot(opener: Opener) -> None:
    store, other = opener(), opener()
    store.append([event(1)])
    with store.consistent_reads():
        before = store.high_water()
        other.append([event(2)], [Decision("r2", "u1", 0, 0, 0.0, False)])
        assert store.high_water() == before and [e.event_id for _, e, _ in store.replay_decided()] == ["e1"]
    assert store.high_water() != before

"""The embedded event log: SQLite in WAL mode, one transaction per batch.

WAL lets `rankserve feedback stats` (and a restarting server) read while a server appends. With
``synchronous=FULL`` a commit is on disk when `append` returns, so an acknowledged event survives a
SIGKILL and a power cut; ``normal`` survives a process crash only, for hosts that trade that for speed.
One connection, used by one thread at a time (`feedback.log.EventLog` owns the writer thread).

A writer holds ``events.sqlite.lock`` (flock) while the log is open. The first one in, with the lock to
itself, cuts a torn or corrupt WAL tail back to the last good commit and logs it (`feedback.wal`); a
writer that opens a log another process has open never touches that live WAL.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import BinaryIO

from feedback.events import (
    EVENT_COLUMNS,
    AppendResult,
    Compacted,
    Event,
    EventRow,
    EventType,
    LogStats,
    StoreUnavailable,
    rows_by_user,
)
from feedback.policy import Decision
from feedback.queries import (
    DECIDED_EVENTS,
    DECISION_COLUMNS,
    HIGH_WATER,
    KEEP,
    KEPT,
    REPLAY_DECISIONS,
    Fold,
    decided_row,
    expired_lists_query,
    expiring,
    list_rows_queries,
    since_query,
)
from feedback.wal import cut_torn_tail

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT    NOT NULL UNIQUE,
    request_id   TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    item_id      INTEGER NOT NULL,
    type         INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, seq);
CREATE TABLE IF NOT EXISTS decisions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT    NOT NULL UNIQUE,
    user_id    TEXT    NOT NULL,
    context    INTEGER NOT NULL,
    arm        INTEGER NOT NULL,
    weight     REAL    NOT NULL,
    explore    INTEGER NOT NULL,
    decided_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('duplicates', 0);
CREATE TABLE IF NOT EXISTS compacted (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_list ON events (request_id);
"""
# A log from before retention has decisions without their time: they get the migration's, so a list
# decided just before the upgrade is not compacted before its feedback comes.
MIGRATE = "ALTER TABLE decisions ADD COLUMN decided_ms INTEGER NOT NULL DEFAULT 0"
INSERT = ("INSERT INTO events (event_id, request_id, user_id, item_id, type, position, timestamp_ms) "
          "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING RETURNING seq")
INSERT_DECISION = (f"INSERT INTO decisions ({DECISION_COLUMNS}, decided_ms) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING")
SYNC = {"full": "FULL", "normal": "NORMAL"}
UNION_USERS = 200  # users per compound SELECT of `users_rows` with a limit (SQLite allows 500 terms)


class SqliteEventStore:
    reorder_window = 0  # BEGIN IMMEDIATE: one writer at a time, so positions become visible in order

    def __init__(self, path: Path, *, sync: str = "full", read_only: bool = False) -> None:
        if sync not in SYNC:
            raise ValueError(f"sync must be one of {sorted(SYNC)}, got {sync!r}")
        self.path = Path(path)
        self._lock: BinaryIO | None = None
        if read_only:
            if not self.path.exists():
                raise FileNotFoundError(f"no event log at {self.path}")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with ExitStack() as opening:  # a log that fails to open releases its lock at once, not at GC
                self._lock = opening.enter_context(self._lock_and_repair())
                # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) below.
                self._db = opening.enter_context(closing(
                    sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)))
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={SYNC[sync]}")
                self._migrate()
                self._db.executescript(SCHEMA)
                opening.pop_all()  # opened: the store owns both until close()

    def _migrate(self) -> None:
        db = self._db
        columns = {r[1] for r in db.execute("PRAGMA table_info(decisions)")}
        if columns and "decided_ms" not in columns:
            db.execute("BEGIN IMMEDIATE")
            try:  # another process may have migrated it since the look above
                if "decided_ms" not in {r[1] for r in db.execute("PRAGMA table_info(decisions)")}:
                    db.execute(MIGRATE)
                    db.execute("UPDATE decisions SET decided_ms = ?", (int(time.time() * 1e3),))
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")

    def _lock_and_repair(self) -> BinaryIO:
        lock = open(self.path.with_name(self.path.name + ".lock"), "a+b")  # noqa: SIM115 (held while open)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process has the log open: its WAL is live, not a tail to cut
            fcntl.flock(lock, fcntl.LOCK_SH)
            return lock
        wal = self.path.with_name(self.path.name + "-wal")
        tail = cut_torn_tail(wal)
        if tail is not None and tail.damaged:
            log.warning("event log %s: cut %d bytes after the last good commit (%s); kept %d bytes, %d "
                        "commits", wal, tail.size - tail.good, tail.problem, tail.good, tail.commits)
        fcntl.flock(lock, fcntl.LOCK_SH)  # others may open the log now
        return lock

    def append(self, events: Sequence[Event], decisions: Sequence[Decision] = (), *,
               claim: Callable[[list[int]], None] | None = None) -> AppendResult:
        """Commit ``events`` (and the policy's ``decisions``) in one transaction; replays of a logged
        event_id are counted, not stored. ``claim`` gets the new events' positions before the commit."""
        if not events and not decisions:
            return AppendResult((), 0)
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            now_ms = int(time.time() * 1e3)
            db.executemany(INSERT_DECISION, [(*d.row(), now_ms) for d in decisions])
            new, seqs = [], []
            for e in events:
                row = db.execute(INSERT, e.row()).fetchone()
                if row is not None:
                    new.append(e)
                    seqs.append(int(row[0]))
            duplicates = len(events) - len(new)
            if duplicates:
                db.execute("UPDATE counters SET value = value + ? WHERE name = 'duplicates'", (duplicates,))
            if claim is not None:
                claim(seqs)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreUnavailable(f"event log {self.path}: {exc}") from exc
        return AppendResult(tuple(new), duplicates)

    def replay(self) -> Iterator[Event]:
        cur = self._db.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")
        for row in cur:
            yield Event.from_row(row)

    def users_rows(self, user_ids: Sequence[str], limit: int | None = None) -> dict[str, list[EventRow]]:
        users = tuple(dict.fromkeys(user_ids))
        if limit is not None:  # each user's newest rows, walking the index backwards from the newest
            return {u: rows for part in range(0, len(users), UNION_USERS)
                    for u, rows in self._newest_rows(users[part : part + UNION_USERS], limit).items()}
        marks = ",".join("?" * len(users))
        try:
            rows = self._db.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE user_id IN ({marks}) "
                                    "ORDER BY user_id, seq", users).fetchall()  # the index's order
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"event log {self.path}: {exc}") from exc
        return rows_by_user(users, rows)

    def _newest_rows(self, users: tuple[str, ...], limit: int) -> dict[str, list[EventRow]]:
        newest = (f"SELECT * FROM (SELECT seq, {EVENT_COLUMNS} FROM events WHERE user_id = ? "
                  "ORDER BY seq DESC LIMIT ?)")
        union = " UNION ALL ".join([newest] * len(users))
        try:
            rows = self._db.execute(f"SELECT {EVENT_COLUMNS} FROM ({union}) ORDER BY user_id, seq",
                                    tuple(a for u in users for a in (u, limit))).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"event log {self.path}: {exc}") from exc
        return rows_by_user(users, rows)

    def replay_decided(self) -> Iterator[tuple[int, Event, Decision | None]]:
        for row in self._db.execute(DECIDED_EVENTS):
            yield decided_row(row)

    def replay_decisions(self) -> Iterator[Decision]:
        for row in self._db.execute(REPLAY_DECISIONS):
            yield Decision.from_row(row)

    def since(self, table: str, after: int, limit: int, skip: Sequence[int] = ()) -> list[tuple]:
        skipped = f"seq IN ({','.join('?' * len(skip))})" if skip else ""
        try:
            return self._db.execute(since_query(table, "?", skipped), (after, *skip, limit)).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"event log {self.path}: {exc}") from exc

    @contextmanager
    def consistent_reads(self) -> Iterator[None]:
        self._db.execute("BEGIN")  # deferred: WAL readers keep the snapshot of their first read
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def high_water(self) -> tuple[int, int]:
        events, decisions = self._db.execute(HIGH_WATER).fetchone()
        return int(events), int(decisions)

    def expired_lists(self, before_ms: int, limit: int) -> list[str]:
        try:
            rows = self._db.execute(expired_lists_query("?"), (before_ms,) * 4 + (limit,)).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"event log {self.path}: {exc}") from exc
        return [r[0] for r in rows]

    def compact(self, request_ids: Sequence[str], before_ms: int, fold: Fold) -> Compacted:
        if not request_ids:
            return Compacted()
        db = self._db
        read_decisions, read_events = list_rows_queries(f"IN ({','.join('?' * len(request_ids))})", "?")
        try:
            db.execute("BEGIN IMMEDIATE")  # no commit can land between the reads and the deletes
            old = expiring(db.execute(read_decisions, request_ids).fetchall(),
                           db.execute(read_events, (*request_ids, before_ms)).fetchall(), before_ms)
            if old.lists:
                prev = db.execute(KEPT).fetchone()
                kept = fold(None if prev is None else prev[0], old.decisions, old.events)
                db.execute(KEEP.format("?"), (kept,))
                db.executemany("DELETE FROM decisions WHERE seq = ?", [(q,) for q in old.decision_seqs])
                db.executemany("DELETE FROM events WHERE seq = ?", [(q,) for q in old.event_seqs])
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"event log {self.path}: {exc}") from exc
        finally:  # a failed read, fold or delete leaves the log as it was
            if db.in_transaction:
                db.execute("ROLLBACK")
        return Compacted(old.lists, len(old.events))

    def kept(self) -> str | None:
        db = self._db
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'compacted'").fetchone() is None:
            return None  # a log from before retention, opened read-only
        row = db.execute(KEPT).fetchone()
        return None if row is None else row[0]

    def stats(self) -> LogStats:
        db = self._db
        events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        by_type = {EventType(t).name: n for t, n in db.execute(
            "SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type")}
        users = db.execute("SELECT COUNT(DISTINCT user_id) FROM events WHERE user_id != ''").fetchone()[0]
        duplicates = db.execute("SELECT value FROM counters WHERE name = 'duplicates'").fetchone()[0]
        return LogStats(int(events), by_type, int(users), int(duplicates))

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()  # releases the flock

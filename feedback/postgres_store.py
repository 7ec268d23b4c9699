"""The shared event log: the `EventStore` interface over PostgreSQL (psycopg 3), for several replicas.

Same schema and semantics as the SQLite store: one transaction per batch, ``event_id`` unique (a replay
is a duplicate and changes nothing), decisions beside the events, replay in commit order (``seq``, a
BIGSERIAL: with concurrent writers, rows become visible in commit order only per writer, so replay
order between replicas follows sequence allocation, which is what profiles and the bandit need: each
user's events in the order one replica committed them). Durability is the server's
(``synchronous_commit`` on by default): the ack follows the COMMIT.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager

from feedback.events import (
    EVENT_COLUMNS,
    AppendResult,
    Compacted,
    Event,
    EventRow,
    EventType,
    LogStats,
    StoreUnavailable,
    first_occurrences,
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq          BIGSERIAL PRIMARY KEY,
    event_id     TEXT    NOT NULL UNIQUE,
    request_id   TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    item_id      BIGINT  NOT NULL,
    type         INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    timestamp_ms BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, seq);
CREATE TABLE IF NOT EXISTS decisions (
    seq        BIGSERIAL PRIMARY KEY,
    request_id TEXT    NOT NULL UNIQUE,
    user_id    TEXT    NOT NULL,
    context    INTEGER NOT NULL,
    arm        INTEGER NOT NULL,
    weight     DOUBLE PRECISION NOT NULL,
    explore    BOOLEAN NOT NULL,
    decided_ms BIGINT  NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
);
-- A log from before retention: its decisions get the migration's time, and so do the decisions a
-- replica of the previous version inserts during a rolling upgrade (the default), so neither is
-- compacted before its feedback comes. Checked first: ALTER TABLE locks the table even when it changes
-- nothing.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'decisions' AND column_name = 'decided_ms') THEN
        ALTER TABLE decisions ADD COLUMN decided_ms BIGINT NOT NULL
            DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO counters VALUES ('duplicates', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS compacted (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_list ON events (request_id);
"""
COMPACT_LOCK = 7342020  # one compaction at a time across replicas (the schema's lock is 7342019)
INSERT = ("INSERT INTO events (event_id, request_id, user_id, item_id, type, position, timestamp_ms) "
          "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING RETURNING event_id, seq")
INSERT_DECISION = (f"INSERT INTO decisions ({DECISION_COLUMNS}, decided_ms) "
                   "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING")


class PostgresEventStore:
    # BIGSERIAL hands seq out at insert: a transaction may become visible after later positions. One
    # that is more positions late (other replicas' batches committed while it ran) is learnt by the
    # others at their next start, from the replay (feedback.tail).
    reorder_window = 2_000

    def __init__(self, dsn: str) -> None:
        import psycopg

        self._errors = psycopg.Error
        try:
            with ExitStack() as opening:  # a store that fails to open keeps no connection
                self._db = opening.enter_context(closing(psycopg.connect(dsn, autocommit=False)))
                with self._db.transaction():
                    # One schema creation at a time when several replicas start together.
                    self._db.execute("SELECT pg_advisory_xact_lock(7342019)")
                    self._db.execute(SCHEMA)
                opening.pop_all()
        except psycopg.Error as exc:
            raise StoreUnavailable(f"event log (PostgreSQL): {exc}") from exc
        self._db.autocommit = True  # transactions are explicit below

    def append(self, events: Sequence[Event], decisions: Sequence[Decision] = (), *,
               claim: Callable[[list[int]], None] | None = None) -> AppendResult:
        if not events and not decisions:
            return AppendResult((), 0)
        try:
            with self._db.transaction(), self._db.cursor() as cur:
                if decisions:
                    now_ms = int(time.time() * 1e3)
                    cur.executemany(INSERT_DECISION, [(*d.row(), now_ms) for d in decisions])
                seq_of: dict[str, int] = {}
                if events:
                    cur.executemany(INSERT, [e.row() for e in events], returning=True)
                    while True:
                        row = cur.fetchone()
                        if row is not None:
                            seq_of[row[0]] = int(row[1])
                        if not cur.nextset():
                            break
                new = first_occurrences(events, set(seq_of))  # a repeated id inserted here is new once
                duplicates = len(events) - len(new)
                if duplicates:
                    cur.execute("UPDATE counters SET value = value + %s WHERE name = 'duplicates'",
                                (duplicates,))
                if claim is not None:
                    claim(list(seq_of.values()))  # before the commit, at the end of this block
        except self._errors as exc:
            raise StoreUnavailable(f"event log (PostgreSQL): {exc}") from exc
        return AppendResult(tuple(new), duplicates)

    def _rows(self, sql: str) -> Iterator[tuple]:
        """Stream a query's rows through a server-side cursor (a log may not fit in memory twice)."""
        with self._db.transaction(), self._db.cursor(name="replay") as cur:
            cur.execute(sql)
            yield from cur

    def replay(self) -> Iterator[Event]:
        for row in self._rows(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq"):
            yield Event.from_row(row)

    def users_rows(self, user_ids: Sequence[str], limit: int | None = None) -> dict[str, list[EventRow]]:
        # Each user's newest rows (LIMIT NULL: all), walking the index backwards from the newest.
        sql = (f"SELECT {EVENT_COLUMNS} FROM unnest(%s::text[]) AS u(id) CROSS JOIN LATERAL "
               f"(SELECT seq, {EVENT_COLUMNS} FROM events WHERE user_id = u.id ORDER BY seq DESC LIMIT %s) e "
               "ORDER BY user_id, seq")
        try:
            with self._db.cursor() as cur:
                rows = cur.execute(sql, (list(dict.fromkeys(user_ids)), limit)).fetchall()
        except self._errors as exc:
            raise StoreUnavailable(f"event log (PostgreSQL): {exc}") from exc
        return rows_by_user(user_ids, rows)

    def replay_decided(self) -> Iterator[tuple[int, Event, Decision | None]]:
        for row in self._rows(DECIDED_EVENTS):
            yield decided_row(row)

    def replay_decisions(self) -> Iterator[Decision]:
        for row in self._rows(REPLAY_DECISIONS):
            yield Decision.from_row(row)

    def since(self, table: str, after: int, limit: int, skip: Sequence[int] = ()) -> list[tuple]:
        sql = since_query(table, "%s", "seq = ANY(%s)" if skip else "")
        try:
            with self._db.cursor() as cur:
                return cur.execute(sql, (after, list(skip), limit) if skip else (after, limit)).fetchall()
        except self._errors as exc:
            raise StoreUnavailable(f"event log (PostgreSQL): {exc}") from exc

    @contextmanager
    def consistent_reads(self) -> Iterator[None]:
        with self._db.transaction():
            self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield

    def high_water(self) -> tuple[int, int]:
        with self._db.cursor() as cur:
            events, decisions = cur.execute(HIGH_WATER).fetchone()
        return int(events), int(decisions)

    def expired_lists(self, before_ms: int, limit: int) -> list[str]:
        try:
            with self._db.cursor() as cur:
                rows = cur.execute(expired_lists_query("%s"), (before_ms,) * 4 + (limit,)).fetchall()
        except self._errors as exc:
            raise StoreUnavailable(f"event log (PostgreSQL): {exc}") from exc
        return [r[0] for r in rows]

    def compact(self, request_ids: Sequence[str], before_ms: int, fold: Fold) -> Compacted:
        if not request_ids:
            return Compacted()
        ids = list(request_ids)
        read_decisions, read_events = list_rows_queries("= ANY(%s)", "%s")
        try:
            with self._db.transaction(), self._db.cursor() as cur:
                # One compaction at a time; read committed, so once the lock is held the reads see another
                # replica's compaction of the same lists, and fold nothing twice. Other replicas' commits
                # go on: the deletes take exactly the rows read, so a row committed after the reads stays.
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (COMPACT_LOCK,))
                old = expiring(cur.execute(read_decisions, (ids,)).fetchall(),
                               cur.execute(read_events, (ids, before_ms)).fetchall(), before_ms)
                if old.lists:
                    prev = cur.execute(KEPT).fetchone()
                    kept = fold(None if prev is None else prev[0], old.decisions, old.events)
                    cur.execute(KEEP.format("%s"), (kept,))
                    cur.execute("DELETE FROM decisions WHERE seq = ANY(%s)", (old.decision_seqs,))
                    cur.execute("DELETE FROM events WHERE seq = ANY(%s)", (old.event_seqs,))
        except self._errors as exc:
            raise StoreUnavailable(f"event log (PostgreSQL): {exc}") from exc
        return Compacted(old.lists, len(old.events))

    def kept(self) -> str | None:
        with self._db.cursor() as cur:
            row = cur.execute(KEPT).fetchone()
        return None if row is None else row[0]

    def stats(self) -> LogStats:
        with self._db.cursor() as cur:
            events = cur.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            by_type = {EventType(t).name: int(n) for t, n in cur.execute(
                "SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type").fetchall()}
            users = cur.execute(
                "SELECT COUNT(DISTINCT user_id) FROM events WHERE user_id <> ''").fetchone()[0]
            dup = cur.execute("SELECT value FROM counters WHERE name = 'duplicates'").fetchone()[0]
        return LogStats(int(events), by_type, int(users), int(dup))

    def close(self) -> None:
        self._db.close()


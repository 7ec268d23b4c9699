"""The SQL both event stores share (SQLite and PostgreSQL speak it alike), and how its rows are read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from feedback.events import EVENT_COLUMNS, Event
from feedback.policy import Decision

# How compaction keeps what it deletes (feedback.retention): given the counts kept so far (None: none
# yet) and whole lists' decisions and events (each with its list's decision, in commit order), the
# counts to keep from now on, as text the store holds for it.
Fold = Callable[[str | None, list[Decision], list[tuple[Event, Decision | None]]], str]

DECISION_COLUMNS = "request_id, user_id, context, arm, weight, explore"  # Decision.row's order


def _columns(columns: str, table: str) -> str:
    return ", ".join(f"{table}.{c.strip()}" for c in columns.split(","))


# The events' positions and columns, then their decision's (NULLs: none), joined on request_id:
# `replay_decided`.
DECIDED_EVENTS = (
    f"SELECT e.seq, {_columns(EVENT_COLUMNS, 'e')}, {_columns(DECISION_COLUMNS, 'd')} "
    "FROM events e LEFT JOIN decisions d ON d.request_id = e.request_id ORDER BY e.seq"
)
REPLAY_DECISIONS = f"SELECT {DECISION_COLUMNS} FROM decisions ORDER BY seq"
N_EVENT_COLUMNS = len(EVENT_COLUMNS.split(","))


SINCE_COLUMNS = {"events": EVENT_COLUMNS, "decisions": DECISION_COLUMNS}


def since_query(table: str, mark: str, skip: str) -> str:
    """`EventStore.since`: a table's rows past a position, less the positions in ``skip`` (a SQL
    condition on ``seq``, or ""), with the driver's placeholder ``mark`` for the position and the limit."""
    unless = f" AND NOT ({skip})" if skip else ""
    return (f"SELECT seq, {SINCE_COLUMNS[table]} FROM {table} WHERE seq > {mark}{unless} "
            f"ORDER BY seq LIMIT {mark}")


HIGH_WATER = ("SELECT (SELECT COALESCE(MAX(seq), 0) FROM events), "
              "(SELECT COALESCE(MAX(seq), 0) FROM decisions)")


def decided_row(row: Sequence) -> tuple[int, Event, Decision | None]:
    """One `DECIDED_EVENTS` row as the event's position, the event and its decision."""
    n = N_EVENT_COLUMNS + 1
    decision = Decision.from_row(row[n:]) if row[n] is not None else None
    return int(row[0]), Event.from_row(row[1:n]), decision


def expired_lists_query(mark: str) -> str:
    """`EventStore.expired_lists`: lists (request ids) with something older than the cutoff and nothing
    at or after it, neither the decision nor an event; ``mark`` is the driver's placeholder (the cutoff
    four times, then the limit). Events without a request id are no list: each goes by its own time
    (`list_rows_queries`)."""
    return (
        "SELECT request_id FROM ("
        f"SELECT request_id FROM events WHERE timestamp_ms < {mark} "
        f"UNION SELECT request_id FROM decisions WHERE decided_ms < {mark}) old "
        "WHERE old.request_id = '' OR (NOT EXISTS (SELECT 1 FROM events e "
        f"WHERE e.request_id = old.request_id AND e.timestamp_ms >= {mark}) "
        "AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.request_id = old.request_id "
        f"AND d.decided_ms >= {mark})) LIMIT {mark}"
    )


def list_rows_queries(ids: str, mark: str) -> tuple[str, str]:
    """`EventStore.compact`'s reads of some lists' rows, with their positions: the decisions, and the
    events in commit order (those without a request id only when older than the cutoff, the second
    ``mark``). ``ids`` is the driver's condition on a list of request ids."""
    return (f"SELECT seq, {DECISION_COLUMNS}, decided_ms FROM decisions WHERE request_id {ids}",
            f"SELECT seq, {EVENT_COLUMNS} FROM events WHERE request_id {ids} "
            f"AND (request_id <> '' OR timestamp_ms < {mark}) ORDER BY seq")


@dataclass(frozen=True)
class Expiring:
    """Of some lists' rows, those of the lists still wholly older than the cutoff: what `compact` folds
    (decisions, events each with its list's decision) and deletes, by position: exactly the rows read,
    so a row committed after the read (another replica's) is never deleted uncounted."""

    lists: int
    decisions: list[Decision]
    events: list[tuple[Event, Decision | None]]
    decision_seqs: list[int]
    event_seqs: list[int]


def expiring(decisions: Sequence[Sequence], events: Sequence[Sequence], before_ms: int) -> Expiring:
    """`list_rows_queries`' rows (decisions: seq, DECISION_COLUMNS, decided_ms; events: seq,
    EVENT_COLUMNS) narrowed to the lists with nothing at or after ``before_ms``."""
    late = {d[1] for d in decisions if int(d[7]) >= before_ms}
    late |= {e[2] for e in events if int(e[7]) >= before_ms}
    kept_d = [d for d in decisions if d[1] not in late]
    kept_e = [e for e in events if e[2] not in late]
    decided = {d[1]: Decision.from_row(d[1:]) for d in kept_d}
    joined = [(ev, decided.get(ev.request_id)) for ev in (Event.from_row(e[1:]) for e in kept_e)]
    lists = len({d[1] for d in kept_d} | {e[2] for e in kept_e})
    return Expiring(lists, list(decided.values()), joined, [int(d[0]) for d in kept_d],
                    [int(e[0]) for e in kept_e])


# What compaction kept of the lists it deleted (`EventStore.kept`), and its replacement in `compact`
# (``KEEP.format(mark)`` with the driver's placeholder).
KEPT = "SELECT value FROM compacted WHERE name = 'policy'"
KEEP = "INSERT INTO compacted VALUES ('policy', {}) ON CONFLICT (name) DO UPDATE SET value = excluded.value"

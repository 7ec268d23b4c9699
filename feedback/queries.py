"""The SQL both event stores share (SQLite and PostgreSQL speak it alike), and how its rows are read."""

from __future__ import annotations

from collections.abc import Sequence

from feedback.events import EVENT_COLUMNS, Event
from feedback.policy import Decision

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

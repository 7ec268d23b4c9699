"""What a feedback event is, independent of the wire (`server.convert` parses the proto into this)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum


class StoreUnavailable(Exception):
    """The log cannot commit (disk full, database gone): nothing of the batch was committed."""


class EventType(IntEnum):
    """Numbers match `ranking.v1.EventType`, so the log stays readable if the proto grows."""

    IMPRESSION = 1
    CLICK = 2
    ADD_TO_CART = 3
    PURCHASE = 4


INTERACTIONS = (EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE)  # the user acted on the item


EVENT_COLUMNS = "event_id, request_id, user_id, item_id, type, position, timestamp_ms"  # Event.row's order
EventRow = tuple[str, str, str, int, int, int, int]  # one event as the stores hold it, EVENT_COLUMNS order


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    request_id: str
    user_id: str
    item_id: int
    type: EventType
    position: int  # 1-based rank it was shown at; 0 = unknown
    timestamp_ms: int

    def row(self) -> EventRow:
        """The stores' columns, in ``EVENT_COLUMNS`` order."""
        return (self.event_id, self.request_id, self.user_id, self.item_id, int(self.type), self.position,
                self.timestamp_ms)

    @classmethod
    def from_row(cls, row: Sequence) -> Event:
        return cls(row[0], row[1], row[2], int(row[3]), EventType(row[4]), int(row[5]), int(row[6]))


def rows_by_user(user_ids: Sequence[str], rows: Iterable[EventRow]) -> dict[str, list[EventRow]]:
    """A query's rows split by their user, in the order they came; [] for a user without any."""
    out: dict[str, list[EventRow]] = {u: [] for u in user_ids}
    for row in rows:
        out[row[2]].append(row)
    return out


def first_occurrences(events: Iterable[Event], ids: set[str]) -> list[Event]:
    """The events whose id is in ``ids``, each id once (its first occurrence), in order; ``ids`` is
    consumed. How one transaction's new ids are handed back when a batch repeats an event_id."""
    out = []
    for e in events:
        if e.event_id in ids:
            out.append(e)
            ids.discard(e.event_id)
    return out


@dataclass(frozen=True)
class AppendResult:
    """Of one appended batch: the events that were new (in order), and how many were replays."""

    new: tuple[Event, ...]
    duplicates: int

    @property
    def accepted(self) -> int:
        return len(self.new)


@dataclass(frozen=True)
class Compacted:
    """Of one compaction (feedback.retention): the whole lists deleted, and their events."""

    lists: int = 0
    events: int = 0

    def __add__(self, other: Compacted) -> Compacted:
        return Compacted(self.lists + other.lists, self.events + other.events)


@dataclass(frozen=True)
class LogStats:
    events: int
    by_type: dict[str, int]
    users: int
    duplicates: int

    def to_dict(self) -> dict:
        return {"events": self.events, "by_type": self.by_type, "users": self.users,
                "duplicates": self.duplicates}

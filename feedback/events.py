"""What a feedback event is, independent of the wire (`server.convert` parses the proto into this)."""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    request_id: str
    user_id: str
    item_id: int
    type: EventType
    position: int  # 1-based rank it was shown at; 0 = unknown
    timestamp_ms: int


@dataclass(frozen=True)
class AppendResult:
    """Of one appended batch: the events that were new (in order), and how many were replays."""

    new: tuple[Event, ...]
    duplicates: int

    @property
    def accepted(self) -> int:
        return len(self.new)


@dataclass(frozen=True)
class LogStats:
    events: int
    by_type: dict[str, int]
    users: int
    duplicates: int

    def to_dict(self) -> dict:
        return {"events": self.events, "by_type": self.by_type, "users": self.users,
                "duplicates": self.duplicates}

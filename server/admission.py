"""Bounded admission: at most `max_inflight` requests run, at most `max_queued` wait; the rest are shed.

Shedding at the door (RESOURCE_EXHAUSTED) keeps latency bounded under overload instead of letting an
unbounded queue grow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Overloaded(Exception):
    pass


class Admission:
    def __init__(self, max_inflight: int, max_queued: int) -> None:
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(max_inflight)
        self.waiting = 0
        self.running = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self.waiting >= self.max_queued:
            raise Overloaded(f"server busy: {self.running} running, {self.waiting} queued")
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()

"""Bounded admission: at most `max_inflight` requests run, at most `max_queued` wait; the rest are shed.

Shedding at the door (RESOURCE_EXHAUSTED) keeps latency bounded under overload instead of letting an
unbounded queue grow. A queue bounded in length can still hold seconds of work (each request takes
longer when every core is busy), so a newcomer is also shed when its expected wait would exceed
`max_wait_s`: (requests ahead of it / slots) × the recent time a request holds a slot (an exponentially
weighted mean). A client then hears RESOURCE_EXHAUSTED (with RetryInfo) at once instead of waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

SERVICE_EWMA = 0.2  # weight of the newest slot time in the running mean


class Overloaded(Exception):
    pass


class Admission:
    def __init__(self, max_inflight: int, max_queued: int, max_wait_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._slots = asyncio.Semaphore(max_inflight)
        self.waiting = 0
        self.running = 0
        self.service_s: float | None = None  # mean time a request holds a slot (None: none finished yet)

    def expected_wait_s(self) -> float:
        """How long a request arriving now would wait for a slot."""
        if not self._slots.locked() or self.service_s is None:
            return 0.0
        return (self.waiting + 1) / self.max_inflight * self.service_s

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self.waiting >= self.max_queued:
            raise Overloaded(f"server busy: {self.running} running, {self.waiting} queued")
        wait = self.expected_wait_s()
        if self.max_wait_s is not None and wait > self.max_wait_s:
            budget_ms = self.max_wait_s * 1e3
            raise Overloaded(f"server busy: expected wait {wait * 1e3:.0f} ms exceeds {budget_ms:.0f} ms "
                             f"({self.running} running, {self.waiting} queued)")
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        start = self._clock()
        try:
            yield
        finally:
            held = self._clock() - start
            self.service_s = held if self.service_s is None else \
                (1 - SERVICE_EWMA) * self.service_s + SERVICE_EWMA * held
            self.running -= 1
            self._slots.release()

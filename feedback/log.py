"""Group commit in front of an `EventStore`: many streams' batches, one transaction, one writer thread.

Each caller awaits its own batch's result, which resolves only after the transaction holding it has
committed, so the server acknowledges nothing that is not durable. Batches that arrive while a commit
is running go into the next one together: under load one fsync covers every waiting stream.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from feedback.events import AppendResult, Event, first_occurrences
from feedback.policy import Decision
from feedback.store import EventStore

T = TypeVar("T")


class EventLog:
    def __init__(self, store: EventStore, *, reader: EventStore | None = None,
                 on_commit: Callable[[AppendResult, float], None] | None = None,
                 claim: Callable[[list[int]], None] | None = None) -> None:
        self.store = store
        self._claim = claim  # each transaction's new positions, before it commits (feedback.tail)
        # Reads (a user's events, when their profile is not held) on a connection and a thread of their
        # own, so a read never waits for a commit nor a commit for a read: on the writer thread, every
        # search by a user not held took ~1 ms of it, and with one search per ten events ingest fell to
        # 0.17 of its rate (benchmarks/profile_reads.py, docs/personalization.md). None: reads run on
        # the writer thread, between commits.
        self.reader = reader
        self._reads = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-log-read")
                       if reader is not None else None)
        # Called with each transaction's result and seconds, in commit order, before any caller resumes:
        # profiles see committed events only, in the order the log holds them.
        self._on_commit = on_commit
        # One thread: the store's connection is used by one thread, and commits are serial anyway.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-log")
        self._pending: list[tuple[Sequence[Event], asyncio.Future[AppendResult]]] = []
        self._decisions: list[Decision] = []
        self._committing = False

    async def append(self, events: Sequence[Event]) -> AppendResult:
        """Commit ``events`` (possibly together with other callers'); returns once they are durable."""
        if not events:
            return AppendResult((), 0)
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        self._wake()
        return await asyncio.shield(future)  # a caller that goes away does not cancel the others' commit

    async def read(self, query: Callable[[EventStore], T]) -> T:
        """``query(store)`` on the reader's connection and thread, or on the writer's between commits
        when there is no reader. A read beside the commits may see a commit whose callback has not run
        yet, and a commit may land after its snapshot: a caller that needs the two in agreement
        (feedback.profile.ProfileBook's load) holds back the callbacks from just before the read starts
        and tells the events the read saw apart by id."""
        loop = asyncio.get_running_loop()
        if self.reader is None:
            return await loop.run_in_executor(self._writer, query, self.store)
        return await loop.run_in_executor(self._reads, query, self.reader)

    async def write(self, job: Callable[[EventStore], T]) -> T:
        """``job(store)`` on the writer's connection and thread, between two commits (maintenance that
        changes the log: feedback.retention's compaction)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, job, self.store)

    def note(self, decision: Decision) -> None:
        """Log a policy decision with the next commit; nobody waits for it (a crash may lose the last
        few, and then only the learning from their feedback)."""
        self._decisions.append(decision)
        self._wake()

    def _wake(self) -> None:
        if not self._committing:
            self._committing = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending or self._decisions:
                batch, self._pending = self._pending, []
                decisions, self._decisions = self._decisions, []
                flat = [e for events, _ in batch for e in events]
                t0 = time.perf_counter()
                try:
                    append = functools.partial(self.store.append, flat, decisions, claim=self._claim)
                    result = await loop.run_in_executor(self._writer, append)
                except Exception as exc:  # nothing of the transaction committed: every caller hears it
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                if self._on_commit:
                    self._on_commit(result, time.perf_counter() - t0)
                _split_result(batch, result)
        finally:
            self._committing = False

    def close(self) -> None:
        if self._reads is not None and self.reader is not None:
            self._reads.shutdown(wait=True)
            self.reader.close()
        self._writer.shutdown(wait=True)
        self.store.close()


def _split_result(batch: list[tuple[Sequence[Event], asyncio.Future[AppendResult]]],
                  result: AppendResult) -> None:
    """Hand each caller its share of one transaction's result (new events are returned in order)."""
    new_ids = {e.event_id for e in result.new}
    for events, fut in batch:
        # An event_id sent twice within one transaction is new once: the first occurrence wins.
        new = first_occurrences(events, new_ids)
        if not fut.done():
            fut.set_result(AppendResult(tuple(new), len(events) - len(new)))

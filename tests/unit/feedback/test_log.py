from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from feedback.events import AppendResult, Event, EventType
from feedback.log import EventLog
from feedback.store import StoreUnavailable, open_store


def events(ids: Sequence[int]) -> list[Event]:
    return [Event(f"e{i}", "", "u", i % 5, EventType.CLICK, 1, 1) for i in ids]


def test_concurrent_callers_share_transactions_and_each_gets_its_own_result(tmp_path: Path) -> None:
    commits: list[AppendResult] = []
    log = EventLog(open_store(tmp_path), on_commit=lambda r, s: commits.append(r))

    async def main() -> list[AppendResult]:
        return await asyncio.gather(*(log.append(events(range(10 * k, 10 * k + 10))) for k in range(8)),
                                    log.append(events([0, 1, 99])))

    results = asyncio.run(main())
    assert [r.accepted for r in results[:8]] == [10] * 8
    assert (results[8].accepted, results[8].duplicates) == (1, 2)  # e99 is new, e0/e1 replays
    # Group commit: nine callers, fewer transactions; every new event reached on_commit exactly once.
    assert len(commits) < 9
    assert sorted(e.event_id for r in commits for e in r.new) == sorted({f"e{i}" for i in [*range(80), 99]})
    assert log.store.stats().events == 81
    log.close()


def test_a_failed_commit_reaches_every_caller_and_the_log_recovers(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    log = EventLog(store)
    real_append = store.append
    failures = iter([True])

    def flaky(batch: Sequence[Event], decisions: Sequence = (), **kwargs: object) -> AppendResult:
        if next(failures, False):
            raise StoreUnavailable("disk full")
        return real_append(batch, decisions, **kwargs)

    store.append = flaky  # type: ignore[method-assign]

    async def main() -> AppendResult:
        with pytest.raises(StoreUnavailable, match="disk full"):
            await log.append(events([1, 2]))
        return await log.append(events([1, 2]))

    assert asyncio.run(main()).accepted == 2  # nothing of the failed batch was committed
    log.close()


def test_a_read_runs_beside_a_commit_still_in_flight(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.append(events([1, 2]))
    log = EventLog(store, reader=open_store(tmp_path, read_only=True))
    release = threading.Event()
    real_append = store.append

    def stuck(batch: Sequence[Event], decisions: Sequence = (), **kwargs: object) -> AppendResult:
        release.wait(30)  # a commit that takes long (a slow disk): it holds the writer thread
        return real_append(batch, decisions, **kwargs)

    store.append = stuck  # type: ignore[method-assign]

    async def main() -> tuple[list[Event], list[Event]]:
        commit = asyncio.ensure_future(log.append(events([3])))
        await asyncio.sleep(0.05)  # the commit has reached the writer thread
        during = await asyncio.wait_for(log.read(lambda s: s.users_rows(["u"])["u"]), 10)
        release.set()
        await commit
        return during, await log.read(lambda s: s.users_rows(["u"])["u"])

    during, after = asyncio.run(main())
    # On the writer thread the read would have waited for the commit (and timed out here).
    assert [row[0] for row in during] == ["e1", "e2"]
    assert [row[0] for row in after] == ["e1", "e2", "e3"]
    log.close()

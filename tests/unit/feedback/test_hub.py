"""The hub's profiles as a bounded cache over a real SQLite log: each profile read from the log when a
request needs it, under concurrent commits, equals the profile of every committed event counted once."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import numpy as np
import pytest

from feedback.events import AppendResult, Event, EventRow, EventType
from feedback.hub import READ_BATCH, FeedbackHub, open_hub
from feedback.log import EventLog
from feedback.policy import Policy
from feedback.profile import ItemColumns, ProfileBook
from feedback.store import EventStore, StoreUnavailable, open_store

ITEMS = ItemColumns.of(np.eye(6, dtype=np.float32), ["A", "B", "A|B", "", "C", "A"],
                       np.array([5.0, 10.0, 20.0, 40.0, 80.0, 160.0]),
                       ["color:red", "color:blue", "", "material:oak", "color:red|material:oak", ""])
USERS = ("u0", "u1", "u2", "u3")


def stream(n: int, seed: int = 0) -> list[Event]:
    rng = random.Random(seed)
    kinds = (EventType.IMPRESSION, EventType.IMPRESSION, EventType.CLICK, EventType.PURCHASE)
    return [Event(f"e{i}", f"r{i // 4}", rng.choice(USERS), rng.randrange(6), rng.choice(kinds),
                  rng.randint(1, 10), 1_000 * i) for i in range(n)]


class SlowReads:
    """The real store, its reads made slow, so commits land while a read runs (as under load)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def append(self, *args: object) -> AppendResult:
        return self.store.append(*args)

    def users_rows(self, user_ids: list[str], limit: int | None = None) -> dict[str, list[EventRow]]:
        time.sleep(0.003)
        logged = self.store.users_rows(user_ids, limit)
        time.sleep(0.003)
        return logged

    def close(self) -> None:
        self.store.close()


def test_profiles_read_under_concurrent_commits_count_every_event_once(tmp_path: Path) -> None:
    hub = open_hub(tmp_path, ITEMS, policy=Policy(bandit=False), capacity=2)
    hub.log.reader = SlowReads(hub.log.reader)  # reads have their own connection: commits go on beside
    events = stream(400)
    rng = random.Random(1)

    async def main() -> None:
        done = asyncio.Event()

        async def ingest() -> None:
            for k in range(0, len(events), 4):
                await hub.ingest(events[k:k + 4])
            done.set()

        async def search() -> None:
            # Capacity 2 of 4 users: profiles are dropped and read back all along, and only while
            # commits land, so the profiles held at the end were read beside them.
            while not done.is_set():
                await hub.profile_for(rng.choice(USERS), (), 0)
                await asyncio.sleep(0)

        await asyncio.gather(ingest(), search(), search())

    asyncio.run(main())
    assert len(hub.profiles) == 2 and hub.loads > 4  # bounded, and read back after being dropped
    whole = ProfileBook(ITEMS)  # every event once, in log order
    whole.apply(events, hub.policy.click_weight)
    # The two profiles held at the end took commits while held (and some while being read): each is the
    # profile of every one of its user's events, counted once; so are the others, read back now.
    held = [u for u in USERS if hub.profiles.holds(u)]
    profiles = {u: hub.profiles.get(u) for u in held}
    profiles |= {u: asyncio.run(hub.profile_for(u, (), 0)) for u in USERS if u not in held}
    for u, p in profiles.items():
        want = whole.get(u)
        assert p.events == want.events and p.classes == pytest.approx(want.classes), u
        assert np.allclose(p.price, want.price) and p.mass == pytest.approx(want.mass), u
    assert sum(p.events for p in profiles.values()) == len(events)
    hub.close()


def test_a_commit_after_the_reads_snapshot_reaches_the_profile_it_installs(tmp_path: Path) -> None:
    """The read and the commit on their own connections, in the worst order: the read has its rows, then
    a commit for the same user lands (and is acknowledged) before the read returns."""
    hub = open_hub(tmp_path, ITEMS, policy=Policy(bandit=False), capacity=4)
    early = [e for e in stream(40) if e.user_id == "u0"]
    late = Event("late", "r-late", "u0", 2, EventType.CLICK, 1, 99_000)
    reader = hub.log.reader

    class CommitDuringRead:
        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            self.loop = loop

        def users_rows(self, user_ids: list[str], limit: int | None = None) -> dict[str, list[EventRow]]:
            rows = reader.users_rows(user_ids, limit)
            asyncio.run_coroutine_threadsafe(hub.ingest([late]), self.loop).result(10)
            return rows

        def close(self) -> None:
            reader.close()

    async def main() -> object:
        await hub.ingest(early)  # u0 is not held: a search reads them back
        hub.log.reader = CommitDuringRead(asyncio.get_running_loop())
        return await asyncio.wait_for(hub.profile_for("u0", (), 0), 20)

    profile = asyncio.run(main())
    whole = ProfileBook(ITEMS)
    whole.apply([*early, late], hub.policy.click_weight)
    assert hub.loads == 1 and profile.events == len(early) + 1 == whole.get("u0").events
    assert profile.classes == pytest.approx(whole.get("u0").classes)
    hub.close()


def test_a_profile_the_log_cannot_be_read_for_raises_and_is_read_again_next_time(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.append(stream(40))
    broken = open_store(tmp_path, read_only=True)
    broken.close()  # reading a closed connection fails as a lost database would
    hub = FeedbackHub(EventLog(store, reader=broken), ProfileBook(ITEMS, capacity=4), Policy(bandit=False))
    with pytest.raises(StoreUnavailable):
        asyncio.run(hub.profile_for("u0", (), 0))
    assert not hub.profiles.holds("u0") and hub.loads == 0
    hub.log.reader = open_store(tmp_path, read_only=True)  # the log is back
    profile = asyncio.run(hub.profile_for("u0", (), 0))
    assert profile is not None and profile.events == sum(e.user_id == "u0" for e in stream(40))
    hub.close()


def test_cold_users_asked_for_together_are_read_back_in_few_queries(tmp_path: Path) -> None:
    """Searches of users not held queue while a read runs and the next read takes up to `READ_BATCH`
    of them in one query; each profile still equals the one fed every event of its user once."""
    users = [f"c{i}" for i in range(2 * READ_BATCH + 5)]
    events = [Event(f"e{i}", f"r{i // 3}", users[i % len(users)], i % 6, EventType.CLICK, 1 + i % 10, i)
              for i in range(600)]
    hub = open_hub(tmp_path, ITEMS, policy=Policy(bandit=False), capacity=len(users))
    reader, reads = hub.log.reader, []

    class Counted:
        def users_rows(self, user_ids: list[str], limit: int | None = None) -> dict[str, list[EventRow]]:
            reads.append(len(user_ids))
            return reader.users_rows(user_ids, limit)

        def close(self) -> None:
            reader.close()

    async def main() -> list:
        await hub.ingest(events)
        hub.log.reader = Counted()
        return await asyncio.gather(*(hub.profile_for(u, (), 0) for u in users))

    profiles = asyncio.run(main())
    assert reads == [READ_BATCH, READ_BATCH, 5] and hub.loads == len(users)
    whole = ProfileBook(ITEMS)
    whole.apply(events, hub.policy.click_weight)
    for u, p in zip(users, profiles, strict=True):
        assert p.events == whole.get(u).events > 0 and p.classes == pytest.approx(whole.get(u).classes), u
    hub.close()


def test_a_read_cancelled_with_the_server_cancels_its_requests_and_holds_nothing(tmp_path: Path) -> None:
    hub = open_hub(tmp_path, ITEMS, policy=Policy(bandit=False), capacity=4)
    hub.log.reader = SlowReads(hub.log.reader)

    async def main() -> None:
        await hub.ingest(stream(40))
        search = asyncio.ensure_future(hub.profile_for("u0", (), 0))
        await asyncio.sleep(0.001)  # the read is in flight on the reader's thread
        behind = [asyncio.ensure_future(hub.profile_for(u, (), 0)) for u in ("u1", "u2")]
        await asyncio.sleep(0)  # u1 and u2 queue behind the read in flight
        assert hub._queued == ["u1", "u2"]
        hub._reader.cancel()  # what stopping the server's loop does to it
        for waiting in (search, *behind):  # not left waiting on a read that will never happen
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiting, 10)
        assert not hub._pending and not hub._queued and hub.loads == 0
        for u in ("u0", "u1", "u2"):
            assert not hub.profiles.holds(u)
            assert u not in hub.profiles._loading  # its commits are no longer held back for it
        await hub.ingest([Event("late", "r-late", "u0", 1, EventType.CLICK, 1, 99_000)])
        profile = await hub.profile_for("u0", (), 0)  # read again, whole, next time
        assert profile.events == sum(e.user_id == "u0" for e in stream(40)) + 1

    asyncio.run(main())
    hub.close()


class ThreadOfRebuild(ProfileBook):
    """The real book, noting the thread each history is rebuilt on."""

    threads: list[str]

    def read_back(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        import threading

        self.threads.append(threading.current_thread().name)
        return super().read_back(*args, **kwargs)


def test_a_history_is_rebuilt_off_the_event_loop(tmp_path: Path) -> None:
    # A long history took the event loop, and every stream with it, for as long as its rebuild (0.86 s
    # for 300,000 events): it is built on the log's reader thread and only the commits during the read
    # are added on the loop.
    import threading

    hub = open_hub(tmp_path, ITEMS, policy=Policy(bandit=False), capacity=4)
    book = ThreadOfRebuild(ITEMS, capacity=4)
    book.threads = []
    hub.profiles = book
    events = stream(200)

    async def main() -> None:
        await hub.ingest(events)
        profile = await hub.profile_for("u1", (), 0)
        assert profile is not None and profile.events == sum(e.user_id == "u1" for e in events)

    asyncio.run(main())
    hub.close()
    assert book.threads and threading.main_thread().name not in book.threads


def test_a_profile_read_back_holds_the_users_newest_events_only(tmp_path: Path) -> None:
    events = [e for e in stream(400) if e.user_id == "u1"]
    store = open_store(tmp_path)
    store.append(stream(400))
    store.close()
    hub = open_hub(tmp_path, ITEMS, policy=Policy(bandit=False), capacity=4, max_user_events=20)
    profile = asyncio.run(hub.profile_for("u1", (), 0))
    hub.close()
    newest = ProfileBook(ITEMS)
    newest.apply(events[-20:], Policy(bandit=False).click_weight)
    assert len(events) > 60 and profile is not None and profile.events == 20
    assert np.allclose(profile.centroid, newest.get("u1").centroid)  # type: ignore[union-attr]
    assert profile.last_ms == events[-1].timestamp_ms

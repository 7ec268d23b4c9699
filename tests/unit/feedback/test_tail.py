"""Following a shared log: a replica learns what the others commit (trials, rewards, profile events)
once each, and a commit that becomes visible after later positions is not missed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedback.events import Event, EventType
from feedback.hub import FeedbackHub, open_hub
from feedback.policy import Policy
from feedback.store import open_store
from feedback.tail import LogTail, RecentIds
from tests.postgres import pg_bin, postgres_server

from .test_hub import ITEMS


def test_recent_ids_remember_the_newest_capacity() -> None:
    ids = RecentIds(capacity=2)
    assert ids.add("a") and ids.add("b") and not ids.add("a")
    assert ids.add("c") and len(ids) == 2 and ids.add("a")  # "a" was the oldest: forgotten
    with pytest.raises(ValueError, match="progress"):
        LogTail(0, 0, lookback=10, limit=10)


def two_replicas(tmp_path: Path, dsn: str | None = None) -> tuple[FeedbackHub, FeedbackHub]:
    return tuple(open_hub(tmp_path, ITEMS, policy=Policy(explore_share=0.0), capacity=8, dsn=dsn)
                 for _ in range(2))  # type: ignore[return-value]


def click(i: int, request_id: str, user: str = "alice", item: int = 2) -> Event:
    return Event(f"c{i}", request_id, user, item, EventType.CLICK, 1, 1_000 * i)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_click_sent_to_another_replica_reaches_the_one_that_ranked_the_list(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else None
    ranker, other = two_replicas(tmp_path, dsn)

    async def main() -> None:
        await ranker.ingest([click(0, "old", item=0)])
        profile = await ranker.profile_for("alice", (), 0)  # held by the ranking replica from now on
        decision = ranker.draw("r1", "alice", profile)
        ranker.served(decision)  # logged with the ranking replica's next commit
        await ranker.ingest([click(1, "unrelated", user="bob")])
        # The gateway's Feedback stream lands on the other replica.
        assert (await other.ingest([click(2, "r1")])).accepted == 1
        assert ranker.policy.bandit.successes.sum() == 0 and ranker.profiles.get("alice").events == 1
        assert await ranker.catch_up()
        assert ranker.policy.bandit.successes.sum() == 1  # the list's arm is rewarded where it was drawn
        assert ranker.profiles.get("alice").events == 2 and ranker.profiles.get("alice").centroid[2] > 0
        # The other replica learns the ranking replica's list as a trial, and its own click only once.
        before = other.policy.ctr(), other.policy.bandit.successes.sum()
        assert await other.catch_up()
        assert other.policy.bandit.trials.sum() == 1 and other.policy.bandit.successes.sum() == before[1]
        # Nothing new: a read learns nothing, on either replica, however often it runs.
        assert not await ranker.catch_up() and not await other.catch_up()
        assert ranker.profiles.get("alice").events == 2 and ranker.policy.bandit.successes.sum() == 1

    try:
        asyncio.run(main())
    finally:
        ranker.close()
        other.close()


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    if pg_bin() is None:
        pytest.fail("PostgreSQL is not installed: `make test` installs it (apt-get install postgresql)")
    with postgres_server() as dsn:
        yield dsn


def test_a_commit_visible_after_later_positions_is_still_read(postgres_dsn: str) -> None:
    """PostgreSQL's sequence hands positions out at insert: a transaction that inserted first and
    commits last becomes visible below a position the tail has already passed."""
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("DROP DATABASE IF EXISTS tail_order")
        db.execute("CREATE DATABASE tail_order")
    dsn = postgres_dsn.replace("dbname=postgres", "dbname=tail_order")
    store = open_store(Path("unused"), dsn=dsn)
    tail = LogTail(*store.high_water(), lookback=store.reorder_window)
    no_lookback = LogTail(*store.high_water(), lookback=0)  # what would do for SQLite's turn-taking writers
    slow = psycopg.connect(dsn)  # a transaction, not committed yet, holds the first position
    slow.execute("INSERT INTO events (event_id, request_id, user_id, item_id, type, position, timestamp_ms) "
                 "VALUES ('slow', 'r', 'u', 1, 2, 1, 0)")
    store.append([Event("fast", "r", "u", 1, EventType.CLICK, 1, 0)])
    assert [e.event_id for e in tail.read(store)[0]] == ["fast"]
    assert [e.event_id for e in no_lookback.read(store)[0]] == ["fast"]
    slow.commit()
    learnt = RecentIds()
    learnt.add("fast")  # the first read learnt it
    assert [e.event_id for e in tail.read(store)[0] if learnt.add(e.event_id)] == ["slow"]
    assert no_lookback.read(store) == ([], [])  # passed over: "slow" sits below "fast"
    slow.close()
    store.close()

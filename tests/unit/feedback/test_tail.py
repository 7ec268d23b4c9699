"""Following a shared log: a replica learns what the others commit (trials, rewards, profile events)
exactly once, by log position, however far behind it is, and a commit that becomes visible after later
positions is not missed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from feedback.events import Event, EventType
from feedback.hub import FeedbackHub, open_hub
from feedback.policy import Policy
from feedback.store import open_store
from feedback.tail import LogTail, _Positions
from tests.postgres import fresh_database

from .test_hub import ITEMS


def test_positions_deliver_each_row_once_and_forget_below_the_floor() -> None:
    marks = _Positions(high=10, lookback=3)
    assert [r[0] for r in marks.fresh([(8,), (11,), (12,)])] == [8, 11, 12]
    assert (marks.high, marks.floor, marks.seen) == (12, 9, {11, 12})  # 8 is below the floor now
    assert [r[0] for r in marks.fresh([(10,), (11,), (12,), (13,)])] == [10, 13]  # 10: a late commit
    with pytest.raises(ValueError, match="progress"):
        LogTail(0, 0, lookback=10, limit=10)


def two_replicas(tmp_path: Path, dsn: str | None = None) -> tuple[FeedbackHub, FeedbackHub]:
    return tuple(open_hub(tmp_path, ITEMS, policy=Policy(explore_share=0.0), capacity=8, dsn=dsn)
                 for _ in range(2))  # type: ignore[return-value]


def click(i: int, request_id: str, user: str = "alice", item: int = 2,
          type_: EventType = EventType.CLICK) -> Event:
    return Event(f"c{i}", request_id, user, item, type_, 1, 1_000 * i)


def run_replicas(tmp_path: Path, dsn: str | None, scenario) -> None:  # type: ignore[no-untyped-def]
    ranker, other = two_replicas(tmp_path, dsn)

    async def main() -> None:
        for hub in (ranker, other):
            hub.follow(3600.0)  # following from the start (this test reads the log itself)
        await scenario(ranker, other)

    try:
        asyncio.run(main())
    finally:
        ranker.close()
        other.close()


@pytest.fixture(params=["sqlite", "postgres"])
def dsn(request: pytest.FixtureRequest) -> str | None:
    """None (a SQLite log in the test's directory), or a fresh PostgreSQL database for the test."""
    if request.param == "sqlite":
        return None
    return fresh_database(request.getfixturevalue("postgres_dsn"), f"tail_{request.node.name[-24:]}")


def test_a_click_sent_to_another_replica_reaches_the_one_that_ranked_the_list(
        tmp_path: Path, dsn: str | None) -> None:
    async def scenario(ranker: FeedbackHub, other: FeedbackHub) -> None:
        await ranker.ingest([click(0, "old", item=0)])
        profile = await ranker.profile_for("alice", (), 0)  # held by the ranking replica from now on
        ranker.served(ranker.draw("r1", "alice", profile))  # logged with the ranker's next commit
        await ranker.ingest([click(1, "unrelated", user="bob")])
        # The gateway's Feedback stream lands on the other replica.
        assert (await other.ingest([click(2, "r1")])).accepted == 1
        assert ranker.policy.bandit.successes.sum() == 0 and ranker.profiles.get("alice").events == 1
        assert await ranker.catch_up()
        assert ranker.policy.bandit.successes.sum() == 1  # the list's arm is rewarded where it was drawn
        assert ranker.profiles.get("alice").events == 2 and ranker.profiles.get("alice").centroid[2] > 0
        # The other replica learns the ranker's list as a trial, and then its own click on it rewards
        # it there too, once (it held the click for the decision).
        assert other.policy.bandit.successes.sum() == 0
        assert await other.catch_up()
        assert other.policy.bandit.trials.sum() == 1 and other.policy.bandit.successes.sum() == 1
        assert not await ranker.catch_up() and not await other.catch_up()  # nothing new: nothing learnt
        assert ranker.profiles.get("alice").events == 2 and ranker.policy.bandit.successes.sum() == 1

    run_replicas(tmp_path, dsn, scenario)


def test_feedback_that_reaches_a_replica_before_its_lists_decision_counts_as_a_replay_would(
        tmp_path: Path, dsn: str | None) -> None:
    """A list's impressions and clicks reach the gateway's replica as soon as the list is shown, before
    that replica has read the ranking replica's decision: once it has, both replicas' counts (trials,
    rewards, randomised clicks by position, CTR by arm) are those of a replay of the whole log."""
    hubs = [open_hub(tmp_path, ITEMS, policy=Policy(explore_share=0.5), capacity=8, dsn=dsn)
            for _ in range(2)]

    async def main() -> None:
        ranker, other = hubs
        for hub in hubs:
            hub.follow(3600.0)
        for k in range(12):
            user = f"user{k % 3}"
            await ranker.ingest([click(100 + k, f"history{k}", user=user, item=k % 6)])
            ranker.served(ranker.draw(f"list{k}", user, await ranker.profile_for(user, (), 0)))
        shown = [Event(f"i{k}-{p}", f"list{k}", f"user{k % 3}", p, EventType.IMPRESSION, p + 1, 5_000)
                 for k in range(12) for p in range(4)]
        acted = [click(200 + k, f"list{k}", user=f"user{k % 3}", item=k % 4) for k in range(0, 12, 2)]
        acted += [click(300, "list1", user="user1", item=2, type_=EventType.PURCHASE),
                  click(301, "list3", user="somebody else", item=1)]
        await other.ingest(shown + acted)  # before it has read any of the ranker's decisions
        await ranker.ingest([click(400, "flush", user="nobody")])  # the decisions ride this commit
        assert await other.catch_up() and await ranker.catch_up()
        replay = Policy(explore_share=0.5)
        store = open_store(tmp_path, dsn=dsn)
        try:
            replay.rebuild(store.replay_decisions(), ((e, d) for _, e, d in store.replay_decided()))
        finally:
            store.close()
        whole = replay.counts()
        # Six lists clicked and one bought from, by their users; another user's click rewards nothing.
        assert whole.successes is not None and sum(map(sum, whole.successes)) == 7
        assert sum(whole.shown.values()) == 48 and "unpersonalised" not in whole.shown
        assert other.policy.counts() == whole
        assert ranker.policy.counts() == whole

    try:
        asyncio.run(main())
    finally:
        for hub in hubs:
            hub.close()


def test_a_profile_read_back_after_another_replicas_commit_counts_it_once(
        tmp_path: Path, dsn: str | None) -> None:
    # The read sees the other replica's click before this replica's tail has: the tail must not add it
    # to the profile again once the profile is installed.
    async def scenario(ranker: FeedbackHub, other: FeedbackHub) -> None:
        await other.ingest([click(0, "r", user="carol", item=1)])
        assert (await ranker.profile_for("carol", (), 0)).events == 1
        await ranker.catch_up()
        assert ranker.profiles.get("carol").events == 1 and ranker.profiles.get("carol").interactions == 1

    run_replicas(tmp_path, dsn, scenario)


def test_a_replica_far_behind_reads_page_after_page_and_learns_each_event_once(tmp_path: Path) -> None:
    async def scenario(ranker: FeedbackHub, other: FeedbackHub) -> None:
        assert (await ranker.profile_for("dave", (), 0)) is None  # held, with no history
        ranker.tail.limit = 7  # pages of 7 rows: 60 events and 3 own ones are 9 pages behind
        for k in range(6):
            await other.ingest([click(10 * k + i, f"r{k}", user="dave", item=i % 6) for i in range(10)])
        await ranker.ingest([click(900 + i, "own", user="dave") for i in range(3)])
        assert ranker.profiles.get("dave").events == 3  # its own, learnt at commit
        assert await ranker.catch_up()
        assert ranker.profiles.get("dave").events == 63  # the other's 60 once, its own 3 not again
        assert not await ranker.catch_up() and ranker.profiles.get("dave").events == 63

    run_replicas(tmp_path, None, scenario)


def test_decisions_are_caught_up_before_the_events_on_their_lists(tmp_path: Path, dsn: str | None) -> None:
    # Far behind, with pages shorter than the backlog: an event read before its list's decision would be
    # learnt as an undecided list's, and its reward lost.
    async def scenario(ranker: FeedbackHub, other: FeedbackHub) -> None:
        await other.ingest([click(0, "history", user="frank", item=0)])
        profile = await other.profile_for("frank", (), 0)
        for k in range(12):
            other.served(other.draw(f"list{k}", "frank", profile))
        await other.ingest([click(1 + k, f"list{k}", user="frank") for k in range(0, 12, 3)])
        assert other.policy.bandit.successes.sum() == 4
        ranker.tail.events.lookback = ranker.tail.decisions.lookback = 0  # pages of 5: 12 decisions, 3 pages
        ranker.tail.limit = 5
        assert await ranker.catch_up()
        assert ranker.policy.bandit.trials.sum() == 12 and ranker.policy.bandit.successes.sum() == 4

    run_replicas(tmp_path, dsn, scenario)


def test_a_row_that_cannot_be_read_is_skipped_not_a_stuck_tail(tmp_path: Path) -> None:
    async def scenario(ranker: FeedbackHub, other: FeedbackHub) -> None:
        assert (await ranker.profile_for("erin", (), 0)) is None
        await other.ingest([click(0, "r", user="erin")])
        with sqlite3.connect(tmp_path / "events.sqlite") as db:  # a type a newer replica might write
            db.execute("INSERT INTO events (event_id, request_id, user_id, item_id, type, position, "
                       "timestamp_ms) VALUES ('new-kind', 'r', 'erin', 1, 99, 1, 0)")
        await other.ingest([click(1, "r", user="erin")])
        await ranker.catch_up()
        assert ranker.tail.skipped == 1 and ranker.profiles.get("erin").events == 2

    run_replicas(tmp_path, None, scenario)


def test_a_commit_visible_after_later_positions_is_still_read(postgres_dsn: str) -> None:
    """PostgreSQL's sequence hands positions out at insert: a transaction that inserted first and
    commits last becomes visible below a position the tail has already passed."""
    import psycopg

    dsn = fresh_database(postgres_dsn, "tail_order")
    store = open_store(Path("unused"), dsn=dsn)
    tail = LogTail(*store.high_water(), lookback=store.reorder_window)
    no_lookback = LogTail(*store.high_water(), lookback=0)  # what would do for SQLite's turn-taking writers
    slow = psycopg.connect(dsn)  # a transaction, not committed yet, holds the first position
    try:
        slow.execute("INSERT INTO events (event_id, request_id, user_id, item_id, type, position, "
                     "timestamp_ms) VALUES ('slow', 'r', 'u', 1, 2, 1, 0)")
        store.append([Event("fast", "r", "u", 1, EventType.CLICK, 1, 0)])
        assert [e.event_id for _, e in tail.read(store).events] == ["fast"]
        assert [e.event_id for _, e in no_lookback.read(store).events] == ["fast"]
        slow.commit()
        assert [e.event_id for _, e in tail.read(store).events] == ["slow"]  # "fast" is not read twice
        assert no_lookback.read(store).events == []  # passed over: "slow" sits below "fast"
        assert tail.read(store).events == []
    finally:
        slow.close()
        store.close()

"""Retention: compaction deletes whole lists older than the cutoff and keeps what the policy learnt from
them, on both stores (the `opener` fixture: SQLite and a real PostgreSQL server)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from feedback.events import Event, EventType
from feedback.hub import open_hub
from feedback.policy import Policy, PolicyCounts
from feedback.retention import Retention, compact_all, fold, kept_counts
from feedback.store import EventStore, open_store

from .conftest import Opener
from .test_hub import ITEMS

NOW_MS = int(time.time() * 1e3)
CUTOFF_MS = NOW_MS + 3_600_000  # every decision committed in a test is older than this
OLD_MS, NEW_MS = 1_000, CUTOFF_MS + 1_000


def random_log(store: EventStore, lists: int = 300, seed: int = 0) -> dict[str, str]:
    """Decided and undecided lists with impressions and interactions, old, new, or both ("straddling"),
    decided lists without events yet, and events naming no list, appended in a few batches; returns
    each list's kind (as old as its newest record)."""
    rng = np.random.default_rng(seed)
    policy, kinds, n = Policy(explore_share=0.3), {}, 0
    for batch in np.array_split(np.arange(lists), 5):
        events, decisions = [], []
        for r in batch:
            rid, user = f"r{r}", f"u{r % 17}"
            kinds[rid] = str(rng.choice(["old", "new", "straddling"], p=[0.6, 0.2, 0.2]))
            decided = rng.random() < 0.7
            if decided:
                decisions.append(policy.draw(rid, user, int(rng.integers(0, 30))))
            shown = 0 if rng.random() < 0.1 else int(rng.integers(2, 6))  # none yet, or 2 to 5
            if not shown:  # a decision alone is as old as its commit; no decision, no events: no list
                if decided:
                    kinds[rid] = "old"
                else:
                    del kinds[rid]
            for pos in range(1, shown + 1):
                item = int(rng.integers(0, 7))
                new = kinds[rid] == "new" or (kinds[rid] == "straddling" and pos > 1)
                ts = NEW_MS + n if new else OLD_MS + n
                events.append(Event(f"e{n}", rid, user, item, EventType.IMPRESSION, pos, ts))
                n += 1
                if rng.random() < 0.4:
                    kind = EventType(int(rng.choice([2, 2, 2, 3, 4])))
                    events.append(Event(f"e{n}", rid, user, item, kind, pos, ts + 1))
                    n += 1
        for _ in range(3):  # feedback naming no list: each event goes by its own time
            ts = OLD_MS + n if rng.random() < 0.5 else NEW_MS + n
            events.append(Event(f"e{n}", "", "", int(rng.integers(0, 7)), EventType.CLICK, 1, ts))
            n += 1
        store.append(events, decisions)
    return kinds


def rebuilt(store: EventStore) -> PolicyCounts:
    policy = Policy(explore_share=0.3)
    with store.consistent_reads():
        policy.rebuild(store.replay_decisions(), ((e, d) for _, e, d in store.replay_decided()),
                       kept_counts(store))
    return policy.counts()


def test_a_compacted_log_rebuilds_the_policy_a_replay_of_the_whole_log_does(opener: Opener) -> None:
    store = opener()
    kinds = random_log(store)
    whole = rebuilt(store)
    assert whole.successes is not None and np.sum(whole.successes) > 20  # the log has rewards to keep
    assert sum(whole.position_clicks) > 0 and whole.clicked

    done = compact_all(store, CUTOFF_MS, batch=37, limit=50)
    old = sorted(r for r, k in kinds.items() if k == "old")
    assert done.lists == len(old) + 1 and len(old) > 100  # and the events naming no list, by their time
    left = {e.request_id for e in store.replay()} | {d.request_id for d in store.replay_decisions()}
    assert left == {r for r, k in kinds.items() if k != "old"} | {""}  # straddling lists stay whole
    assert all(len([e for e in store.replay() if e.request_id == r]) > 1
               for r, k in kinds.items() if k == "straddling")
    assert all(e.timestamp_ms >= CUTOFF_MS for e in store.replay() if e.request_id == "")
    assert rebuilt(store) == whole
    assert rebuilt(opener()) == whole  # from another connection: the kept counts are committed

    # A second compaction with a later cutoff adds to what the first kept.
    later = NEW_MS + 10**9
    assert compact_all(store, later).lists == len(kinds) - len(old) + 1
    assert store.stats().events == 0 and not list(store.replay_decisions())
    assert rebuilt(store) == whole


def test_a_list_whose_decision_is_younger_than_the_cutoff_stays(opener: Opener) -> None:
    store = opener()
    kinds = random_log(store, lists=120, seed=4)
    whole, decided = rebuilt(store), {d.request_id for d in store.replay_decisions()}
    undecided_old = {r for r, k in kinds.items() if k == "old"} - decided
    done = compact_all(store, NOW_MS - 3_600_000)  # every decision was committed after this
    assert done.lists == len(undecided_old) + 1 and undecided_old
    assert {d.request_id for d in store.replay_decisions()} == decided
    assert not undecided_old & {e.request_id for e in store.replay()}
    assert rebuilt(store) == whole


def test_a_list_that_gets_an_event_after_it_was_found_is_kept(opener: Opener) -> None:
    store = opener()
    kinds = random_log(store, lists=40, seed=1)
    found = store.expired_lists(CUTOFF_MS, 1_000)
    assert sorted(found) == sorted(["", *(r for r, k in kinds.items() if k == "old")])
    late = sorted(found)[1]
    store.append([Event("late", late, "u1", 3, EventType.CLICK, 1, NEW_MS)])
    done = store.compact(found, CUTOFF_MS, fold)
    assert done.lists == len(found) - 1
    assert {e.event_id for e in store.replay() if e.request_id == late} >= {"late"}
    assert store.expired_lists(CUTOFF_MS, 1_000) == []


def test_a_fold_that_fails_deletes_nothing(opener: Opener) -> None:
    store = opener()
    random_log(store, lists=30, seed=2)
    before = store.stats().events

    def broken(*_: object) -> str:
        raise ValueError("cannot fold")

    with pytest.raises(ValueError, match="cannot fold"):
        store.compact(store.expired_lists(CUTOFF_MS, 100), CUTOFF_MS, broken)
    assert store.stats().events == before and store.kept() is None
    assert compact_all(store, CUTOFF_MS).lists > 0  # the log still works


def test_counts_kept_for_other_arms_are_refused() -> None:
    kept = Policy().counts()
    kept.trials = kept.successes = [[1.0, 2.0]]
    with pytest.raises(ValueError, match="arms or contexts changed"):
        Policy().add_counts(kept)
    assert PolicyCounts.from_json(Policy().counts().to_json()) == Policy().counts()


def test_a_log_from_before_retention_gets_decision_times_and_compacts(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "events.sqlite")) as db:  # the previous schema
        db.executescript("""
            CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
                request_id TEXT NOT NULL, user_id TEXT NOT NULL, item_id INTEGER NOT NULL,
                type INTEGER NOT NULL, position INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL);
            CREATE TABLE decisions (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE,
                user_id TEXT NOT NULL, context INTEGER NOT NULL, arm INTEGER NOT NULL, weight REAL NOT NULL,
                explore INTEGER NOT NULL);
            INSERT INTO decisions (request_id, user_id, context, arm, weight, explore)
                VALUES ('old', 'u1', 0, 2, 1.0, 0), ('recent', 'u1', 0, 2, 1.0, 0);
            INSERT INTO events (event_id, request_id, user_id, item_id, type, position, timestamp_ms)
                VALUES ('e1', 'old', 'u1', 1, 2, 1, 1000), ('e2', 'recent', 'u1', 1, 2, 1, 9000000000000);
        """)
        db.commit()
    with closing(open_store(tmp_path)) as store:
        migrated = int(time.time() * 1e3)
        # The decisions take the migration's time: a list decided just before the upgrade waits for
        # its feedback, and goes once it is as old as the cutoff.
        assert compact_all(store, NOW_MS).lists == 0
        assert compact_all(store, migrated + 1).lists == 1  # 'recent' has a recent event: kept
        assert [d.request_id for d in store.replay_decisions()] == ["recent"]
        kept = PolicyCounts.from_json(store.kept() or "")
        assert np.sum(kept.trials) == 1 and np.sum(kept.successes) == 1


def test_a_server_compacts_as_it_runs_and_restarts_where_it_was(tmp_path: Path) -> None:
    """The hub finds expired lists on its reader and deletes them on its writer between commits, on its
    timer; a restart from the compacted log counts what a start from the whole log counted, though the
    server that compacted ran without the bandit."""
    clock = [OLD_MS]  # the events' own time: nothing is a day older

    async def main() -> tuple[PolicyCounts, PolicyCounts, int]:
        hub = open_hub(tmp_path, ITEMS, policy=Policy(explore_share=0.3), capacity=10)
        random_log(hub.log.store, lists=120, seed=3)  # as another writer of the log would
        hub.close()
        hub = open_hub(tmp_path, ITEMS, policy=Policy(explore_share=0.3), capacity=10)
        before = hub.policy.counts()
        hub.close()
        # The compacting server runs without the bandit: what it keeps must not depend on that.
        hub = open_hub(tmp_path, ITEMS, policy=Policy(bandit=False), capacity=10)
        hub.retain(Retention(days=1.0, every_s=0.05), lambda: clock[0])
        await asyncio.sleep(0.2)
        assert hub.compacted.lists == 0
        clock[0] = CUTOFF_MS + 86_400_000
        for _ in range(100):
            await asyncio.sleep(0.05)
            if hub.compacted.lists:
                break
        lists = hub.compacted.lists
        hub.close()
        hub = open_hub(tmp_path, ITEMS, policy=Policy(explore_share=0.3), capacity=10)
        after = hub.policy.counts()
        hub.close()
        return before, after, lists

    before, after, lists = asyncio.run(main())
    assert lists > 50
    assert after == before
    with closing(open_store(tmp_path)) as store:
        assert store.expired_lists(CUTOFF_MS, 1_000) == []


def test_no_retention_keeps_everything() -> None:
    assert Retention(days=0).cutoff_ms(NOW_MS) is None
    assert Retention(days=2).cutoff_ms(NOW_MS) == NOW_MS - 2 * 86_400_000



def test_a_postgres_log_from_before_retention_gets_decision_times(postgres_dsn: str) -> None:
    import psycopg

    from tests.postgres import fresh_database

    dsn = fresh_database(postgres_dsn, "pre_retention")
    with psycopg.connect(dsn, autocommit=True) as db:  # the previous schema's decisions
        db.execute("CREATE TABLE decisions (seq BIGSERIAL PRIMARY KEY, request_id TEXT NOT NULL UNIQUE, "
                   "user_id TEXT NOT NULL, context INTEGER NOT NULL, arm INTEGER NOT NULL, "
                   "weight DOUBLE PRECISION NOT NULL, explore BOOLEAN NOT NULL)")
        db.execute("INSERT INTO decisions (request_id, user_id, context, arm, weight, explore) "
                   "VALUES ('old', 'u1', 0, 2, 1.0, false)")
        db.execute("CREATE TABLE events (seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, "
                   "request_id TEXT NOT NULL, user_id TEXT NOT NULL, item_id BIGINT NOT NULL, "
                   "type INTEGER NOT NULL, position INTEGER NOT NULL, timestamp_ms BIGINT NOT NULL)")
        db.execute("INSERT INTO events (event_id, request_id, user_id, item_id, type, position, "
                   "timestamp_ms) VALUES ('e1', 'old', 'u1', 1, 2, 1, 1000)")
    for _ in range(2):  # a second start finds the column there
        with closing(open_store(Path("unused"), dsn=dsn)) as store:
            assert [d.request_id for d in store.replay_decisions()] == ["old"]
    with closing(open_store(Path("unused"), dsn=dsn)) as store:
        assert compact_all(store, NOW_MS).lists == 0  # the decision has the migration's time
        assert compact_all(store, int(time.time() * 1e3) + 1).lists == 1
        kept = PolicyCounts.from_json(store.kept() or "")
        assert np.sum(kept.trials) == 1 and np.sum(kept.successes) == 1 and store.stats().events == 0


def test_a_commit_during_a_postgres_compaction_is_never_deleted_uncounted(postgres_dsn: str) -> None:
    """PostgreSQL compactions run beside other replicas' commits (read committed): an event committed
    for a list between the compaction's reads and its deletes stays in the log."""
    from tests.postgres import fresh_database

    dsn = fresh_database(postgres_dsn, "compact_race")
    with closing(open_store(Path("unused"), dsn=dsn)) as store, \
            closing(open_store(Path("unused"), dsn=dsn)) as other:
        random_log(store, lists=30, seed=5)
        found = [r for r in store.expired_lists(CUTOFF_MS, 1_000) if r]

        def fold_while_another_commits(*args: object) -> str:
            other.append([Event("during", found[0], "u1", 3, EventType.CLICK, 1, OLD_MS)])
            return fold(*args)  # type: ignore[arg-type]

        done = store.compact(found, CUTOFF_MS, fold_while_another_commits)
        assert done.lists == len(found)
        assert [e.event_id for e in store.replay()
                if e.request_id == found[0]] == ["during"]  # committed, never counted: kept

"""Feedback in one place: the durable log, and the profiles and policy it feeds.

`ingest` returns once the events are committed; committed events update the policy (bandit rewards,
position propensities) and then the profiles held, in log order. `profile_for` gives a request its
user's profile, rebuilding it from the log's events for that user when it is not held (the profiles are
a bounded cache: memory does not grow with the users). `draw` says how a request is personalised, and
`served` counts and logs that decision once the list is ranked. On start, `open_hub` replays the log's
decisions and events into a fresh policy; so a restart (or a crash) loses nothing the log acknowledged
and keeps nothing it did not. Replicas sharing one log learn each other's commits by `follow`
(feedback.tail).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from feedback.events import AppendResult, Compacted, Event
from feedback.log import EventLog
from feedback.policy import Decision, Policy
from feedback.profile import ItemColumns, ProfileBook, ReadBack, UserProfile
from feedback.retention import COMPACT_BATCH, FIND_BATCH, Retention, fold, kept_counts
from feedback.store import EventStore, open_store
from feedback.tail import LogTail

logger = logging.getLogger(__name__)

# Users whose profiles one read fetches at most. Cold users' searches queue while a read runs, and the
# next read takes them together: one query and one hop to the reader's thread for many users, where a
# hop each cost the event loop as much as the query (benchmarks/profile_reads.py, docs/personalization.md).
# Small, so one read's rows and rebuilds do not hold the event loop from the commits for long.
READ_BATCH = 16


# Events learnt from a read of the shared log between two yields to the event loop: a full page learnt
# at once held the loop ~150 ms (10,000 events, 200 profiles held).
LEARN_CHUNK = 1_000
# Undecided lists whose events a following replica keeps for the decision it may read next
# (`Policy.hold_undecided`): a list's impressions reach the gateway's replica as soon as the list is
# shown, up to a follow interval before its decision does. 10,000 lists is ten seconds at 1,000 lists/s.
HOLD_LISTS = 10_000


class FeedbackHub:
    def __init__(self, log: EventLog, profiles: ProfileBook, policy: Policy, *, tail: LogTail | None = None,
                 max_user_events: int | None = None) -> None:
        self.log = log
        # A profile read back from the log holds the user's newest this many events (None: all): a
        # user with an outsized history (a bot, a shared account) costs the reader no more than this.
        self.max_user_events = max_user_events
        self.profiles = profiles
        self.policy = policy
        self.tail = tail  # where the shared log has been read up to (feedback.tail)
        self._catching_up = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self.compacted = Compacted()  # by this server since it started
        self.loads = 0  # profiles rebuilt from the log
        self._pending: dict[str, asyncio.Future[None]] = {}  # users being read back: queued or in flight
        self._queued: list[str] = []  # ... of which not read yet, in the order they were asked for
        self._reader: asyncio.Task[None] | None = None  # held: the loop keeps only weak references

    async def ingest(self, events: Sequence[Event]) -> AppendResult:
        return await self.log.append(events)

    def learn(self, events: Sequence[Event]) -> None:
        """Committed events reach the policy and then the profiles (in that order: a profile weighs a
        click by the propensities the policy has learnt)."""
        if events:
            self.policy.learn(events)
            self.profiles.apply(events, self.policy.click_weight)

    @property
    def _following(self) -> bool:
        return self._follower is not None

    async def catch_up(self) -> bool:
        """Read what other replicas committed to the shared log since the last read, on the log's
        reader, until a page comes back short, and learn it: their decisions as trials, then their
        events (this replica's own rows are told apart by the positions they claimed before they
        committed, feedback.tail). True when anything was new."""
        if self.tail is None:
            return False
        new = False
        async with self._catching_up:
            while True:
                read = await self.log.read(self.tail.read)
                trials = self.policy.record(read.decisions)
                events = [e for _, e in read.events]
                for i in range(0, len(events), LEARN_CHUNK):
                    self.learn(events[i : i + LEARN_CHUNK])
                    await asyncio.sleep(0)
                new = new or bool(trials or events)
                if not read.full:
                    return new

    def follow(self, interval_s: float, on_learn: Callable[[], None] | None = None) -> None:
        """Learn the other replicas' commits to the shared log (`catch_up`) every ``interval_s`` until
        `close`, and before a profile read back from the log is installed. Call it before the first
        commit: only this replica's commits from then on are known as its own."""
        if self.tail is None or self._following:
            return
        self.tail.own.active = True  # this replica's commits claim their positions from now on
        self.policy.hold_undecided(HOLD_LISTS)

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    if await self.catch_up() and on_learn is not None:
                        on_learn()
                except Exception as exc:  # the next tick reads again; the server stays up
                    logger.warning("feedback log: reading other replicas' commits failed: %s", exc)

        self._follower = asyncio.get_running_loop().create_task(loop())

    async def compact(self, before_ms: int) -> Compacted:
        """Delete the lists wholly older than ``before_ms`` from the log, keeping what the policy learnt
        from them (feedback.retention): found on the log's reader, deleted on its writer
        ``COMPACT_BATCH`` lists per transaction, between the commits. The policy in memory has counted
        them already and does not change."""
        done = Compacted()
        while True:
            ids = await self.log.read(lambda store: store.expired_lists(before_ms, FIND_BATCH))
            for i in range(0, len(ids), COMPACT_BATCH):
                chunk = ids[i : i + COMPACT_BATCH]
                done += await self.log.write(lambda store, chunk=chunk: store.compact(chunk, before_ms, fold))
            if len(ids) < FIND_BATCH:
                return done

    def retain(self, retention: Retention, clock_ms: Callable[[], int]) -> None:
        """Compact the log (`compact`) every ``retention.every_s`` while the server runs, first at once."""
        if retention.days <= 0 or self._compactor is not None:
            return

        async def loop() -> None:
            while True:
                try:
                    cutoff = retention.cutoff_ms(clock_ms())
                    if cutoff is not None:
                        done = await self.compact(cutoff)
                        self.compacted += done
                        if done.lists:
                            logger.info("feedback log: compacted %d lists (%d events) older than %g days",
                                        done.lists, done.events, retention.days)
                except Exception as exc:  # the next round tries again; the server stays up
                    logger.warning("feedback log: compaction failed: %s", exc)
                await asyncio.sleep(retention.every_s)

        self._compactor = asyncio.get_running_loop().create_task(loop())

    async def profile_for(self, user_id: str, recent_item_ids: Sequence[int], now_ms: int
                          ) -> UserProfile | None:
        """The user's profile plus the request's recent items (None: nothing to personalise on). Raises
        `StoreUnavailable` when the profile is not held and the log cannot be read."""
        if user_id and not self.profiles.holds(user_id):
            if user_id not in self._pending:  # one read per user, however many requests wait on it
                # Every commit whose callback runs from now on is held back; the read, which starts
                # later, sees every commit whose callback ran before (its commit came first). So each
                # event reaches the profile: read, held back, or both (then once, by id); commits after
                # the install apply to it as to any profile held.
                self.profiles.begin_load(user_id)
                loop = asyncio.get_running_loop()
                self._pending[user_id] = loop.create_future()
                self._queued.append(user_id)
                if self._reader is None:
                    self._reader = loop.create_task(self._read_queued())
            await asyncio.shield(self._pending[user_id])  # a request that goes away leaves the load
        return self.profiles.for_request(user_id, recent_item_ids, now_ms)

    async def _read_queued(self) -> None:
        """Read the queued users back, up to ``READ_BATCH`` a query, on the log's reader connection
        beside the commits, until none is queued."""
        try:
            while self._queued:
                users, self._queued = self._queued[:READ_BATCH], self._queued[READ_BATCH:]
                try:
                    logged = await self.log.read(functools.partial(
                        self._read_back, users=users, weight=self.policy.frozen_click_weight()))
                    if self._following:
                        # Events of other replicas the read saw reach these users' loads held back (and
                        # once, by id), not again after the install through a later read of the tail.
                        await self.catch_up()
                except Exception as exc:  # every user of the read hears it; the next request reads again
                    self._abandon(users, exc)
                    continue
                except BaseException:  # cancelled (the server stops): so is every request still waiting
                    self._abandon([*users, *self._queued], None)
                    self._queued = []
                    raise
                for u in users:
                    self.profiles.finish_load(u, logged[u], self.policy.click_weight)
                    self.loads += 1
                    self._pending.pop(u).set_result(None)
        finally:
            self._reader = None

    def _read_back(self, store: EventStore, users: Sequence[str], weight: Callable[[int], float]
                   ) -> dict[str, ReadBack]:
        """The users' rows and the profiles they make, both on the log's reader thread (`read_back`),
        with the position weights as they were when the read was asked for (the loop moves the live
        ones)."""
        return {u: self.profiles.read_back(rows, weight)
                for u, rows in store.users_rows(users, self.max_user_events).items()}

    def _abandon(self, users: Sequence[str], exc: Exception | None) -> None:
        """Stop loading ``users``: their waiting requests get ``exc``, or are cancelled without one."""
        for u in users:
            self.profiles.abort_load(u)
            done = self._pending.pop(u)
            if exc is None:
                done.cancel()
            else:
                done.set_exception(exc)

    def draw(self, request_id: str, user_id: str, profile: UserProfile) -> Decision:
        """The personal weight and exploration of one personalised list; counted once `served`."""
        return self.policy.draw(request_id, user_id, profile.interactions)

    def served(self, decision: Decision) -> None:
        """A drawn list was ranked: one trial of its arm, logged for its feedback (once per request). A
        list that was shed, ran out of time or failed is no trial."""
        if self.policy.record([decision]):
            self.log.note(decision)

    def close(self) -> None:
        for task in (self._follower, self._compactor):
            if task is not None:
                task.cancel()  # a read or a compaction that runs finishes before the log closes below
        self._follower = self._compactor = None
        self.log.close()


def open_hub(state_dir: Path, items: ItemColumns, *, policy: Policy, capacity: int, sync: str = "full",
             dsn: str | None = None, half_life_s: float = 7 * 86400.0, max_user_events: int | None = None,
             on_commit: Callable[[AppendResult, float], None] | None = None) -> FeedbackHub:
    """Open (or create) the log (under ``state_dir``, or the PostgreSQL database ``dsn`` names) and
    rebuild the policy from it (blocking). Profiles are read per user when first needed, and the
    ``capacity`` most recently used are held."""
    store = open_store(state_dir, sync=sync, dsn=dsn)
    reader = open_store(state_dir, dsn=dsn, read_only=True)  # the profile reads' own connection
    # The marks and the replays in one snapshot; the tail reads on from the marks.
    with store.consistent_reads():  # a list committed during the start: in all three reads, or none
        tail = LogTail(*store.high_water(), lookback=store.reorder_window)
        policy.rebuild(store.replay_decisions(), _marked(store.replay_decided(), tail), kept_counts(store))
    profiles = ProfileBook(items, half_life_s=half_life_s, capacity=capacity)

    def committed(result: AppendResult, seconds: float) -> None:
        hub.learn(result.new)
        if on_commit is not None:
            on_commit(result, seconds)

    log = EventLog(store, reader=reader, on_commit=committed, claim=tail.own.claim)
    hub = FeedbackHub(log, profiles, policy, tail=tail, max_user_events=max_user_events)
    return hub


def _marked(rows: Iterable[tuple[int, Event, Decision | None]], tail: LogTail
            ) -> Iterator[tuple[Event, Decision | None]]:
    """The replay's events with their decisions, each position marked seen in the tail on the way."""
    for seq, event, decision in rows:
        tail.mark_seen(seq)
        yield event, decision

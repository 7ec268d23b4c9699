"""Feedback in one place: the durable log, and the profiles and policy it feeds.

`ingest` returns once the events are committed; committed events update the policy (bandit rewards,
position propensities) and then the profiles held, in log order. `profile_for` gives a request its
user's profile, rebuilding it from the log's events for that user when it is not held (the profiles are
a bounded cache: memory does not grow with the users). `decide` says how a request is personalised and
logs that decision. On start, `open_hub` replays the log's decisions and events into a fresh policy; so a
restart (or a crash) loses nothing the log acknowledged and keeps nothing it did not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from feedback.events import AppendResult, Event
from feedback.log import EventLog
from feedback.policy import Decision, Policy
from feedback.profile import ItemColumns, ProfileBook, UserProfile
from feedback.store import open_store


class FeedbackHub:
    def __init__(self, log: EventLog, profiles: ProfileBook, policy: Policy) -> None:
        self.log = log
        self.profiles = profiles
        self.policy = policy
        self.loads = 0  # profiles rebuilt from the log
        self._pending: dict[str, asyncio.Future[None]] = {}

    async def ingest(self, events: Sequence[Event]) -> AppendResult:
        return await self.log.append(events)

    async def profile_for(self, user_id: str, recent_item_ids: Sequence[int], now_ms: int
                          ) -> UserProfile | None:
        """The user's profile plus the request's recent items (None: nothing to personalise on). Raises
        `StoreUnavailable` when the profile is not held and the log cannot be read."""
        if user_id and not self.profiles.holds(user_id):
            if user_id not in self._pending:  # one read per user, however many requests wait on it
                self._pending[user_id] = asyncio.ensure_future(self._load(user_id))
            await asyncio.shield(self._pending[user_id])  # a request that goes away leaves the load
        return self.profiles.for_request(user_id, recent_item_ids, now_ms)

    async def _load(self, user_id: str) -> None:
        self.profiles.begin_load(user_id)
        try:
            # On the log's reader connection, beside the commits. Every commit whose callback runs from
            # now on is held back (begin_load above), and the read sees every commit whose callback ran
            # before (its commit came first). So each event reaches the profile: read, held back, or
            # both (then once, by id); commits after the install apply to it as to any profile held.
            logged = await self.log.read(lambda store: store.user_events(user_id))
        except BaseException:
            self.profiles.abort_load(user_id)
            raise
        finally:
            del self._pending[user_id]
        self.profiles.finish_load(user_id, logged, self.policy.click_weight)
        self.loads += 1

    def decide(self, request_id: str, user_id: str, profile: UserProfile) -> Decision:
        """The personal weight and exploration of one personalised list, logged for its feedback."""
        decision = self.policy.decide(request_id, user_id, profile.interactions)
        self.log.note(decision)
        return decision

    def close(self) -> None:
        self.log.close()


def open_hub(state_dir: Path, items: ItemColumns, *, policy: Policy, capacity: int, sync: str = "full",
             dsn: str | None = None, half_life_s: float = 7 * 86400.0,
             on_commit: Callable[[AppendResult, float], None] | None = None) -> FeedbackHub:
    """Open (or create) the log (under ``state_dir``, or the PostgreSQL database ``dsn`` names) and
    rebuild the policy from it (blocking). Profiles are read per user when first needed, and the
    ``capacity`` most recently used are held."""
    store = open_store(state_dir, sync=sync, dsn=dsn)
    reader = open_store(state_dir, dsn=dsn, read_only=True)  # the profile reads' own connection
    policy.record(store.replay_decisions())
    policy.learn(store.replay())
    profiles = ProfileBook(items, half_life_s=half_life_s, capacity=capacity)

    def committed(result: AppendResult, seconds: float) -> None:
        policy.learn(result.new)
        profiles.apply(result.new, policy.click_weight)
        if on_commit is not None:
            on_commit(result, seconds)

    return FeedbackHub(EventLog(store, reader=reader, on_commit=committed), profiles, policy)

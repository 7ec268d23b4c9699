"""Feedback in one place: the durable log, and the profiles and policy it feeds.

`ingest` returns once the events are committed; committed events update the policy (bandit rewards,
position propensities) and then the profiles, in log order. `personal` decides how a request is
personalised and logs that decision. On start, `open_hub` replays the whole log (decisions, then events)
into a fresh policy and fresh profiles, so a restart (or a crash) loses nothing the log acknowledged and
keeps nothing it did not.
"""

from __future__ import annotations

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

    async def ingest(self, events: Sequence[Event]) -> AppendResult:
        return await self.log.append(events)

    def profile_for(self, user_id: str, recent_item_ids: Sequence[int], now_ms: int) -> UserProfile | None:
        return self.profiles.for_request(user_id, recent_item_ids, now_ms)

    def decide(self, request_id: str, user_id: str, profile: UserProfile) -> Decision:
        """The personal weight and exploration of one personalised list, logged for its feedback."""
        decision = self.policy.decide(request_id, user_id, profile.interactions)
        self.log.note(decision)
        return decision

    def close(self) -> None:
        self.log.close()


def open_hub(state_dir: Path, items: ItemColumns, *, policy: Policy, sync: str = "full",
             dsn: str | None = None, half_life_s: float = 7 * 86400.0,
             on_commit: Callable[[AppendResult, float], None] | None = None) -> FeedbackHub:
    """Open (or create) the log (under ``state_dir``, or the PostgreSQL database ``dsn`` names) and
    rebuild policy and profiles from it (blocking)."""
    store = open_store(state_dir, sync=sync, dsn=dsn)
    policy.record(store.replay_decisions())
    policy.learn(store.replay())
    profiles = ProfileBook(items, half_life_s=half_life_s)
    profiles.apply(store.replay(), policy.click_weight)

    def committed(result: AppendResult, seconds: float) -> None:
        policy.learn(result.new)
        profiles.apply(result.new, policy.click_weight)
        if on_commit is not None:
            on_commit(result, seconds)

    return FeedbackHub(EventLog(store, on_commit=committed), profiles, policy)

"""Per personalised request: the personal weight (the bandit's pick, or a fixed one) and whether its
top is shuffled to measure position bias; and what the decisions learn from the feedback on them.

Every decision is written to the log beside the events (`EventStore.append(decisions=...)`), so the
bandit and the propensities are rebuilt exactly by `replay` on start: the log is their checkpoint.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from feedback.bandit import Choice, ThompsonBandit
from feedback.events import Event, EventType
from feedback.propensity import Propensities

INTERACTIONS = (EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE)


@dataclass(frozen=True)
class Decision:
    request_id: str
    user_id: str
    context: int
    arm: int  # -1: a fixed weight, no bandit arm
    weight: float
    explore: bool  # the list's top k is served in random order


def request_seed(request_id: str, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha1(f"{salt}:{request_id}".encode()).digest()[:8], "big")


class Policy:
    def __init__(self, *, bandit: bool = True, fixed_weight: float = 1.0, explore_share: float = 0.05,
                 tracked: int = 200_000) -> None:
        self.bandit = ThompsonBandit() if bandit else None
        self.fixed_weight = fixed_weight
        self.explore_share = explore_share
        self.propensities = Propensities()
        self._tracked = tracked
        self._decisions: OrderedDict[str, Decision] = OrderedDict()  # recent ones, for their feedback
        self._rewarded: set[str] = set()

    def decide(self, request_id: str, user_id: str, profile_events: int) -> Decision:
        rng = np.random.default_rng(request_seed(request_id, "bandit"))
        explore = rng.random() < self.explore_share
        if self.bandit is None:
            decision = Decision(request_id, user_id, 0, -1, self.fixed_weight, explore)
        else:
            c = self.bandit.choose(profile_events, rng)
            decision = Decision(request_id, user_id, c.context, c.arm, c.weight, explore)
        self.record([decision])
        return decision

    def record(self, decisions: Iterable[Decision]) -> None:
        """Take decisions as made (online) or as logged (replay): each is one trial of its arm."""
        for d in decisions:
            if d.request_id in self._decisions:
                continue
            self._decisions[d.request_id] = d
            if self.bandit is not None and d.arm >= 0:
                self.bandit.served(Choice(d.context, d.arm, d.weight))
            while len(self._decisions) > self._tracked:
                old, _ = self._decisions.popitem(last=False)
                self._rewarded.discard(old)

    def learn(self, events: Iterable[Event]) -> None:
        """Committed events on decided lists: clicks on shuffled lists measure position bias, and the
        first interaction on a list rewards its arm."""
        for e in events:
            d = self._decisions.get(e.request_id)
            if d is None or e.type not in INTERACTIONS:
                continue
            if d.explore and e.type == EventType.CLICK:
                self.propensities.observe_click(e.position)
            if e.request_id not in self._rewarded:
                self._rewarded.add(e.request_id)
                if self.bandit is not None and d.arm >= 0:
                    self.bandit.rewarded(Choice(d.context, d.arm, d.weight))

    def click_weight(self, position: int) -> float:
        """Inverse-propensity weight of an interaction shown at ``position``."""
        return self.propensities.weight(position)

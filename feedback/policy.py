"""Per personalised request: the personal weight (the bandit's pick, or a fixed one) and whether its
top is shuffled to measure position bias; and what the decisions learn from the feedback on them.

Every decision is written to the log beside the events (`EventStore.append(decisions=...)`), so the
bandit and the propensities are rebuilt exactly by `replay` on start: the log is their checkpoint.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from feedback.bandit import Choice, ThompsonBandit
from feedback.events import INTERACTIONS, Event, EventType
from feedback.propensity import Propensities


@dataclass(frozen=True)
class Decision:
    request_id: str
    user_id: str
    context: int
    arm: int  # -1: a fixed weight, no bandit arm
    weight: float
    explore: bool  # the list's top k is served in random order

    def row(self) -> tuple[str, str, int, int, float, bool]:
        """The stores' column order (request_id, user_id, context, arm, weight, explore)."""
        return (self.request_id, self.user_id, self.context, self.arm, self.weight, self.explore)

    @classmethod
    def from_row(cls, row: Sequence) -> Decision:
        return cls(row[0], row[1], int(row[2]), int(row[3]), float(row[4]), bool(row[5]))


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
        # Impressions and clicks by the arm their list was served under: "unpersonalised" (no decision:
        # no user, no history, or a list decided before the tracked window) or the personal weight. A
        # click counts only on a list whose impressions were logged, so CTR stays a share.
        self.shown: Counter[str] = Counter()
        self.clicked: Counter[str] = Counter()
        self._impressed: OrderedDict[str, None] = OrderedDict()

    def draw(self, request_id: str, user_id: str, interactions: int) -> Decision:
        """How to personalise this list, not yet counted (``interactions``: the profile's, the bandit's
        context). A request already recorded gets its recorded decision: a retry is served, and credited,
        as the first was."""
        known = self._decisions.get(request_id)
        if known is not None:
            return known
        rng = np.random.default_rng(request_seed(request_id, "bandit"))
        explore = rng.random() < self.explore_share
        if self.bandit is None:
            return Decision(request_id, user_id, 0, -1, self.fixed_weight, explore)
        c = self.bandit.choose(interactions, rng)
        return Decision(request_id, user_id, c.context, c.arm, c.weight, explore)

    def decide(self, request_id: str, user_id: str, interactions: int) -> Decision:
        """`draw` and `record` at once, for a list that is always served (the simulator)."""
        decision = self.draw(request_id, user_id, interactions)
        self.record([decision])
        return decision

    def record(self, decisions: Iterable[Decision]) -> int:
        """Take decisions as served (online) or as logged (replay): each is one trial of its arm; a
        request already recorded is not counted again. Returns how many were new."""
        new = 0
        for d in decisions:
            if d.request_id in self._decisions:
                continue
            new += 1
            self._decisions[d.request_id] = d
            if self.bandit is not None and d.arm >= 0:
                self.bandit.served(Choice(d.context, d.arm, d.weight))
            while len(self._decisions) > self._tracked:
                old, _ = self._decisions.popitem(last=False)
                self._rewarded.discard(old)
        return new

    def learn(self, events: Iterable[Event]) -> None:
        """Committed events: impressions and clicks counted by arm; on decided lists, clicks on shuffled
        lists measure position bias, and the first interaction on a list rewards its arm."""
        for e in events:
            d = self._decisions.get(e.request_id)
            arm = "unpersonalised" if d is None else f"weight {d.weight:g}"
            if e.type == EventType.IMPRESSION:
                self.shown[arm] += 1
                self._impressed[e.request_id] = None
                if len(self._impressed) > self._tracked:
                    self._impressed.popitem(last=False)
            elif e.type == EventType.CLICK and e.request_id in self._impressed:
                self.clicked[arm] += 1
            if d is None or e.type not in INTERACTIONS:
                continue
            if d.explore and e.type == EventType.CLICK:
                self.propensities.observe_click(e.position)
            if e.request_id not in self._rewarded:
                self._rewarded.add(e.request_id)
                if self.bandit is not None and d.arm >= 0:
                    self.bandit.rewarded(Choice(d.context, d.arm, d.weight))

    def ctr(self) -> dict[str, float]:
        """Clicks per impression by arm, for the arms that have impressions."""
        return {arm: self.clicked[arm] / n for arm, n in self.shown.items() if n}

    def click_weight(self, position: int) -> float:
        """Inverse-propensity weight of an interaction shown at ``position``."""
        return self.propensities.weight(position)

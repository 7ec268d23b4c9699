"""Per personalised request: the personal weight (the bandit's pick, or a fixed one) and whether its
top is shuffled to measure position bias; and what the decisions learn from the feedback on them.

Every decision is written to the log beside the events (`EventStore.append(decisions=...)`), so the
bandit and the propensities are rebuilt by `Policy.rebuild` on start: the log is their checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

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


@dataclass
class PolicyCounts:
    """What a policy has counted, as sums: what compaction (feedback.retention) keeps of the lists it
    deletes from the log, and a rebuild starts from. Each field adds, so the counts of two sets of
    whole lists (a decision with all its events) are the counts of their union."""

    trials: list[list[float]] | None = None  # the bandit's (context, arm) trials; None: no bandit
    successes: list[list[float]] | None = None
    position_clicks: list[float] = field(default_factory=list)  # clicks on randomised lists, by position
    shown: dict[str, int] = field(default_factory=dict)  # impressions by arm (`Policy.ctr`)
    clicked: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: PolicyCounts) -> PolicyCounts:
        def grid(a: list[list[float]] | None, b: list[list[float]] | None) -> list[list[float]] | None:
            if a is None or b is None:
                return a if b is None else b
            return (np.asarray(a) + np.asarray(b)).tolist()

        clicks = np.zeros(max(len(self.position_clicks), len(other.position_clicks)))
        clicks[: len(self.position_clicks)] += self.position_clicks
        clicks[: len(other.position_clicks)] += other.position_clicks
        return PolicyCounts(grid(self.trials, other.trials), grid(self.successes, other.successes),
                            clicks.tolist(), dict(Counter(self.shown) + Counter(other.shown)),
                            dict(Counter(self.clicked) + Counter(other.clicked)))

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PolicyCounts:
        return cls(**json.loads(text))


# Events held per undecided list, on average (`Policy.hold_undecided`): the oldest lists go when the
# total passes this times the lists held. At ~450 B an event, 10,000 lists hold at most ~45 MB.
HOLD_PER_LIST = 10


UNPERSONALISED = "unpersonalised"  # the CTR arm of a list without a decision


def arm_of(d: Decision | None) -> str:
    """The arm a list's impressions and clicks count under (`Policy.ctr`)."""
    return UNPERSONALISED if d is None else f"weight {d.weight:g}"


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
        # click counts once per (list, item) the list's logged impressions showed, so CTR stays a share.
        self.shown: Counter[str] = Counter()
        self.clicked: Counter[str] = Counter()
        # (list, item) shown -> the arm it was counted under; None once clicked. The newest ``tracked``.
        self._impressed: OrderedDict[tuple[str, int], str | None] = OrderedDict()
        # Events on lists not decided here (yet), each with the arm its impression or click was counted
        # under (None: not counted), for the decision another replica may still log (`hold_undecided`).
        self._held: OrderedDict[str, list[tuple[Event, str | None]]] = OrderedDict()
        self._hold_lists = 0
        self._held_events = 0

    def counts(self) -> PolicyCounts:
        b = self.bandit
        trials, successes = (None, None) if b is None else (b.trials.tolist(), b.successes.tolist())
        return PolicyCounts(trials, successes, self.propensities.clicks.tolist(),
                            {k: v for k, v in self.shown.items() if v},  # an arm whose counts moved
                            {k: v for k, v in self.clicked.items() if v})

    def add_counts(self, c: PolicyCounts) -> None:
        """Add counts kept from lists no longer in the log (feedback.retention): as if replayed."""
        b = self.bandit
        if b is not None and c.trials is not None and c.successes is not None:
            if np.shape(c.trials) != b.trials.shape:
                raise ValueError(f"kept bandit counts have shape {np.shape(c.trials)}, the bandit "
                                 f"{b.trials.shape}: its arms or contexts changed")
            b.trials += np.asarray(c.trials)
            b.successes += np.asarray(c.successes)
        self.propensities.add_clicks(c.position_clicks)
        self.shown.update(c.shown)
        self.clicked.update(c.clicked)

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

    def hold_undecided(self, lists: int) -> None:
        """Keep the events of up to ``lists`` undecided lists (the newest) until their decision is
        recorded, and then learn them as a replay of the log would, which joins each event to its
        decision whatever came first: for replicas on one log, where a list's impressions and clicks can
        reach another replica before the decision it reads from the ranking one (feedback.tail)."""
        self._hold_lists = lists

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
            if (held := self._held.pop(d.request_id, None)) is not None:
                self._held_events -= len(held)
                self._settle(d, held)
        return new

    def learn(self, events: Iterable[Event]) -> None:
        """Committed events, each with its list's decision if that is still in the tracked window."""
        for e in events:
            d = self._decisions.get(e.request_id)
            counted = self._learn_one(e, d, self._rewarded)
            # Held: what a decision can still change, an impression it counted or any interaction.
            if d is None and self._hold_lists and e.request_id and (counted or e.type in INTERACTIONS):
                self._held.setdefault(e.request_id, []).append((e, counted))
                self._held.move_to_end(e.request_id)
                self._held_events += 1
                cap = self._hold_lists * HOLD_PER_LIST
                while len(self._held) > self._hold_lists or self._held_events > cap:
                    _, dropped = self._held.popitem(last=False)
                    self._held_events -= len(dropped)

    def _settle(self, d: Decision, held: list[tuple[Event, str | None]]) -> None:
        """A decision recorded after events on its list: what they counted for the unpersonalised arm
        moves to the list's (an impression of the list's user, and the first click on what it showed),
        and its user's interactions reward it: as `_learn_one` with the decision joined."""
        arm, moved = arm_of(d), set()
        for e, counted in held:
            key = (e.request_id, e.item_id)
            ours = not e.user_id or e.user_id == d.user_id
            if counted == UNPERSONALISED and e.type == EventType.IMPRESSION and ours:
                self.shown[counted] -= 1
                self.shown[arm] += 1
                moved.add(key)
                if self._impressed.get(key) == counted:
                    self._impressed[key] = arm  # a click still to come counts under the list's arm
            elif counted == UNPERSONALISED and key in moved:  # a click counts under its impression's arm
                self.clicked[counted] -= 1
                self.clicked[arm] += 1
            if ours:
                self._reward(e, d, self._rewarded)

    def rebuild(self, decisions: Iterable[Decision], events: Iterable[tuple[Event, Decision | None]],
                kept: PolicyCounts | None = None) -> None:
        """On start, from the log: the counts compaction kept of lists it deleted (``kept``), every
        decision as a trial (`record`), then every event in commit order with its list's decision as
        the log joins it. Not through the window: recording all decisions first leaves only the newest
        ``tracked`` in it, and the feedback on older lists, rewarded while the server ran, would find
        none."""
        if kept is not None:
            self.add_counts(kept)
        self.record(decisions)
        rewarded: set[str] = set()
        for e, d in events:
            self._learn_one(e, d, rewarded)
        self._rewarded = {r for r in rewarded if r in self._decisions}

    def _learn_one(self, e: Event, d: Decision | None, rewarded: set[str]) -> str | None:
        """Impressions and first clicks counted by arm; on a decided list, clicks on a shuffled list
        measure position bias, and the first interaction rewards its arm. Returns the arm the event was
        counted under (None: not counted, a repeated impression or a click after the first)."""
        if d is not None and e.user_id and e.user_id != d.user_id:
            d = None  # feedback naming another user's list: that user's list earns nothing from it
        arm = arm_of(d)
        key = (e.request_id, e.item_id)
        counted = None
        if e.type == EventType.IMPRESSION:
            if key not in self._impressed:
                self.shown[arm] += 1
                self._impressed[key] = counted = arm
                if len(self._impressed) > self._tracked:
                    self._impressed.popitem(last=False)
        elif e.type == EventType.CLICK and (shown_under := self._impressed.get(key)) is not None:
            # The first click on an item the list showed, under the arm its impression was counted
            # under (a replica may learn the list's decision between the two): CTR stays a share.
            self.clicked[shown_under] += 1
            self._impressed[key] = None
            counted = shown_under
        if d is not None:
            self._reward(e, d, rewarded)
        return counted

    def _reward(self, e: Event, d: Decision, rewarded: set[str]) -> None:
        if e.type not in INTERACTIONS:
            return
        if d.explore and e.type == EventType.CLICK:
            self.propensities.observe_click(e.position)
        if e.request_id not in rewarded:
            rewarded.add(e.request_id)
            if self.bandit is not None and d.arm >= 0:
                self.bandit.rewarded(Choice(d.context, d.arm, d.weight))

    def ctr(self) -> dict[str, float]:
        """Clicks per impression by arm, for the arms that have impressions."""
        return {arm: self.clicked[arm] / n for arm, n in self.shown.items() if n}

    def frozen_click_weight(self) -> Callable[[int], float]:
        """`click_weight` as the propensities stand now, for work on another thread (a profile read
        back beside the event loop, which goes on learning)."""
        frozen = copy.deepcopy(self.propensities)
        return frozen.weight

    def click_weight(self, position: int) -> float:
        """Inverse-propensity weight of an interaction shown at ``position``."""
        return self.propensities.weight(position)

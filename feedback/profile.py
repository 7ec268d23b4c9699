"""User profiles: decayed aggregates of each user's interactions, updated as events commit.

A profile holds what the personal score reads (`pipeline.personalize`): an item-embedding centroid,
product-class affinities (a multi-valued class ``A|B`` credits both, an empty one none), the weight
of interactions per fine log-price bin (``PRICE_BINS`` over the catalog's range; the personal score
smooths it into a price preference that may have several modes) and attribute-value affinities
(every ``key:value`` of the items' feature lists, e.g. ``color:navy`` or ``brand:x``; an item without
features credits none), each a sum of event weights decayed with a half-life, plus the time of the last
interaction. Impressions add no
weight (being shown says nothing of taste) but are counted per attribute value, so the personal score
can read an affinity as a rate: interactions per time shown.
Profiles live in memory, the most recently used ones only, and a profile not held is rebuilt from the
durable log's events for its user when a request needs it (`ProfileBook`, `feedback.hub`), so the log
is the only state that must survive a crash and memory does not grow with the number of users.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from catalog.io import class_parts, parse_features
from feedback.events import INTERACTIONS, Event, EventRow, EventType

EVENT_WEIGHT = {EventType.IMPRESSION: 0.0, EventType.CLICK: 1.0, EventType.ADD_TO_CART: 2.0,
                EventType.PURCHASE: 4.0}
VIEW_WEIGHT = 0.5  # an item in the request's recent_item_ids: viewed, less than a click
PRICE_BINS = 48  # fine enough that smoothing, not binning, decides how near two prices are
REMEMBERED = (EventType.IMPRESSION, *INTERACTIONS)  # what the impression window keeps or marks
SHOWN_WINDOW = 500  # a user's most recent impressions kept for the taste model (`feedback.taste`)


def log_prices(prices: np.ndarray) -> np.ndarray:
    """Each item's log price; NaN where the price is missing or not positive (it then says nothing)."""
    prices = np.asarray(prices, dtype=np.float64)
    ok = np.isfinite(prices) & (prices > 0)
    return np.where(ok, np.log(np.where(ok, prices, 1.0)), np.nan)


@dataclass(frozen=True)
class PriceScale:
    """The catalog's log prices on ``PRICE_BINS`` equal bins: each item's bin (-1: no price), the bins'
    centres and the catalog's log-price spread (what "near in price" is measured against)."""

    bins: np.ndarray  # (n,) int64
    centres: np.ndarray  # (PRICE_BINS,)
    spread: float  # standard deviation of the catalog's log prices
    log_price: np.ndarray  # (n,) each item's log price, NaN where unknown

    @classmethod
    def of(cls, prices: np.ndarray) -> PriceScale:
        lp = log_prices(prices)
        known = lp[np.isfinite(lp)]
        lo, hi = (float(known.min()), float(known.max())) if known.size else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, PRICE_BINS + 1)
        bins = np.clip(np.searchsorted(edges, np.nan_to_num(lp, nan=lo), side="right") - 1, 0, PRICE_BINS - 1)
        spread = float(known.std()) if known.size > 1 and known.std() > 0 else 1.0
        return cls(np.where(np.isfinite(lp), bins, -1).astype(np.int64), (edges[:-1] + edges[1:]) / 2, spread,
                   lp)


def attribute_values(features: object) -> tuple[str, ...]:
    """A WANDS feature list (``key:value|key:value``) as normalised ``key:value`` strings; numbered
    repeats of a key (``feature_2``) count as the key; a missing list (None, NaN) has none."""
    out = []
    for key, value in parse_features(features):
        key, value = key.strip().lower().rstrip("_0123456789"), value.strip().lower()
        if key and value:
            out.append(f"{key}:{value}")
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class ItemColumns:
    """What profiles read per item (row = item id)."""

    vectors: np.ndarray  # (n, d) float32, L2-normalised
    classes: Sequence[tuple[str, ...]]
    prices: PriceScale
    attributes: Sequence[tuple[str, ...]] = ()  # per item, its "key:value" features ((): none known)

    @classmethod
    def of(cls, vectors: np.ndarray, product_classes: Sequence[object], prices: np.ndarray,
           features: Sequence[object] | None = None) -> ItemColumns:
        attrs = [attribute_values(f) for f in features] if features is not None else []
        return cls(vectors, [class_parts(c) for c in product_classes], PriceScale.of(prices), attrs)

    def attrs_of(self, item_id: int) -> tuple[str, ...]:
        return self.attributes[item_id] if self.attributes else ()

    def __len__(self) -> int:
        return len(self.prices.bins)


class Impressions:
    """A user's most recent impressions (at most ``SHOWN_WINDOW``): per impression the item, how likely
    its position was examined (the policy's estimate when it was applied) and whether the user then
    interacted with it, in parallel arrays (17 bytes an impression, where a dict of objects took ~190).

    An impression is found by a 64-bit hash of (request id, item id): a click marks the one it was on. The
    arrays grow by doubling to the window, then the oldest impression is overwritten. ``changes`` counts
    edits, so the taste model fitted on them (``fitted``: the count it was fitted at, and the model) is
    reused until they change: a user's lists between two feedback commits cost one fit, not one each."""

    __slots__ = ("changes", "clicked", "examined", "fitted", "item_ids", "keys", "oldest", "size")

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.item_ids = np.zeros(0, np.int32)  # ProfileBook.apply keeps ids below the catalog's size
        self.examined = np.zeros(0, np.float32)
        self.clicked = np.zeros(0, bool)
        self.size = 0  # filled slots
        self.oldest = 0  # the slot the next impression overwrites once the window is full
        self.changes = 0
        self.fitted: tuple[int, object] | None = None

    def __len__(self) -> int:
        return self.size

    @staticmethod
    def key(request_id: str, item_id: int) -> int:
        # Python's hash is salted per process; these arrays live in memory only (rebuilt from the log).
        return hash((request_id, item_id))

    def find(self, request_id: str, item_id: int) -> int:
        """The slot holding that impression, or -1."""
        hits = np.flatnonzero(self.keys[: self.size] == self.key(request_id, item_id))
        return int(hits[0]) if hits.size else -1

    def add(self, request_id: str, item_id: int, examined: float, clicked: bool) -> None:
        if self.size < SHOWN_WINDOW:
            if self.size == len(self.keys):
                grown = min(max(16, 2 * self.size), SHOWN_WINDOW)
                for name in ("keys", "item_ids", "examined", "clicked"):
                    old = getattr(self, name)
                    setattr(self, name, np.concatenate([old, np.zeros(grown - old.size, old.dtype)]))
            slot, self.size = self.size, self.size + 1
        else:
            slot, self.oldest = self.oldest, (self.oldest + 1) % SHOWN_WINDOW
        self.keys[slot] = self.key(request_id, item_id)
        self.item_ids[slot], self.examined[slot], self.clicked[slot] = item_id, examined, clicked
        self.changes += 1

    def replay(self, seen: Iterable[tuple[int, int, float, bool]]) -> None:
        """Remember a history of (key, item id, examined, interacted) in order, as `_remember` would one
        at a time, into an empty window: a dict finds slots where ``find`` scans the array per event."""
        slots: dict[int, int] = {}
        keys: list[int] = []
        item_ids: list[int] = []
        seen_at: list[float] = []  # examination probability per slot
        clicked: list[bool] = []
        changes = 0
        for key, item_id, examined, interacted in seen:
            if (slot := slots.get(key)) is not None:
                if interacted and not clicked[slot]:
                    clicked[slot] = True
                    changes += 1
                continue
            if len(keys) < SHOWN_WINDOW:
                slot = len(keys)
                keys.append(key)
                item_ids.append(item_id)
                seen_at.append(examined)
                clicked.append(interacted)
            else:
                slot, self.oldest = self.oldest, (self.oldest + 1) % SHOWN_WINDOW
                del slots[keys[slot]]
                keys[slot], item_ids[slot], seen_at[slot], clicked[slot] = key, item_id, examined, interacted
            slots[key] = slot
            changes += 1
        self.changes += changes
        self.size = len(keys)
        self.keys = np.array(keys, np.int64)
        self.item_ids = np.array(item_ids, np.int32)
        self.examined = np.array(seen_at, np.float32)
        self.clicked = np.array(clicked, bool)

    def mark_clicked(self, slot: int) -> None:
        if not self.clicked[slot]:
            self.clicked[slot] = True
            self.changes += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item ids, examination probabilities, clicked) of the held impressions, in slot order."""
        n = self.size
        return self.item_ids[:n], self.examined[:n].astype(np.float64), self.clicked[:n]


@dataclass
class UserProfile:
    centroid: np.ndarray  # decayed weighted sum of item vectors (d,)
    classes: dict[str, float] = field(default_factory=dict)
    price: np.ndarray = field(default_factory=lambda: np.zeros(PRICE_BINS))  # weight per log-price bin
    attrs: dict[str, float] = field(default_factory=dict)
    mass: float = 0.0  # decayed total weight
    events: int = 0  # interactions applied: the profile's version
    last_ms: int = 0
    # Impressions: how often each attribute value was shown to the user (decayed), so an affinity can be
    # read as a rate (interactions per time shown) and not only as exposure (pipeline.personalize).
    seen: dict[str, float] = field(default_factory=dict)
    seen_total: float = 0.0
    # Interactions applied (clicks, carts, purchases, viewed items; not impressions): how much the
    # profile knows, the bandit's context (`feedback.bandit`). ``events`` counts impressions too.
    interactions: int = 0
    # The most recent impressions (found by request id and item id), with whether each was interacted with.
    shown: Impressions = field(default_factory=Impressions)

    def add(self, items: ItemColumns, item_id: int, weight: float, at_ms: int, half_life_ms: float, *,
            shown: bool = False) -> None:
        """Decay what is there to ``at_ms`` and add one interaction, or with ``shown`` one impression
        (an older event is added decayed)."""
        self.events += 1
        if weight <= 0 and not shown:
            return
        if at_ms >= self.last_ms:
            if self.mass or self.seen_total:
                self._scale(0.5 ** ((at_ms - self.last_ms) / half_life_ms))
            self.last_ms = at_ms
            age = 1.0
        else:
            age = 0.5 ** ((self.last_ms - at_ms) / half_life_ms)
        if shown:
            for a in items.attrs_of(item_id):
                self.seen[a] = self.seen.get(a, 0.0) + age
            self.seen_total += age
            return
        weight *= age
        self.interactions += 1
        self.centroid += weight * items.vectors[item_id]
        for c in items.classes[item_id]:
            self.classes[c] = self.classes.get(c, 0.0) + weight
        for a in items.attrs_of(item_id):
            self.attrs[a] = self.attrs.get(a, 0.0) + weight
        if (b := items.prices.bins[item_id]) >= 0:
            self.price[b] += weight
        self.mass += weight

    def _scale(self, f: float) -> None:
        self.centroid *= f
        self.price *= f
        self.mass *= f
        self.seen_total *= f
        for table in (self.classes, self.attrs, self.seen):
            for key in table:
                table[key] *= f

    def decayed_to(self, now_ms: int, half_life_ms: float) -> UserProfile:
        """A copy decayed from its last event to ``now_ms`` (itself when that is not later)."""
        if now_ms <= self.last_ms:
            return self
        out = self.merged(UserProfile(np.zeros_like(self.centroid)))
        out._scale(0.5 ** ((now_ms - self.last_ms) / half_life_ms))
        out.last_ms = now_ms
        return out

    def merged(self, other: UserProfile) -> UserProfile:
        out = UserProfile(self.centroid + other.centroid, dict(self.classes), self.price + other.price,
                          dict(self.attrs), self.mass + other.mass, self.events + other.events,
                          max(self.last_ms, other.last_ms), dict(self.seen),
                          self.seen_total + other.seen_total, self.interactions + other.interactions,
                          self.shown)  # shared: the personal score only reads it (and caches its fit)
        for mine, theirs in ((out.classes, other.classes), (out.attrs, other.attrs), (out.seen, other.seen)):
            for key, w in theirs.items():
                mine[key] = mine.get(key, 0.0) + w
        return out


@dataclass(frozen=True)
class ReadBack:
    """A user's profile as the log's rows built it (`ProfileBook.read_back`), and the event ids it holds."""

    profile: UserProfile
    ids: frozenset[str]


class ProfileBook:
    """Users' profiles in memory, fed committed events only.

    Unbounded (``capacity`` None, as the offline tools use it): every user the events name. Bounded (the
    server): the ``capacity`` most recently used users; a commit for a user not held is left to the log,
    and a request for one rebuilds their profile from the log's events (`begin_load`, then `finish_load`
    with what the log read). Events committed while a load reads are held back and added after it, each
    once: the read may or may not have seen them, so they are told apart by event id."""

    def __init__(self, items: ItemColumns, *, half_life_s: float = 7 * 86400.0,
                 capacity: int | None = None) -> None:
        self.items = items
        self.half_life_ms = half_life_s * 1e3
        self.capacity = capacity
        self._n_items = len(items)  # read per event: `len(items)` is two attribute lookups and a call
        self._profiles: OrderedDict[str, UserProfile] = OrderedDict()  # least recently used first
        self._loading: dict[str, list[Event]] = {}  # users being read from the log: commits meanwhile

    def __len__(self) -> int:
        return len(self._profiles)

    def holds(self, user_id: str) -> bool:
        return user_id in self._profiles

    def apply(self, events: Iterable[Event], position_weight: Callable[[int], float] | None = None) -> int:
        """Add committed events; ``position_weight`` (the policy's inverse propensity of the position an
        item was shown at) lifts an interaction low on the list, which fewer shoppers ever looked at.
        Returns how many were added to a profile held (or new, when unbounded)."""
        n, position_weight = 0, _per_position(position_weight)
        for e in events:
            if not e.user_id or not self._places(e.item_id):
                continue
            p = self._profiles.get(e.user_id)
            if p is None:
                if (held_back := self._loading.get(e.user_id)) is not None:
                    held_back.append(e)
                    continue
                if self.capacity is not None:
                    continue  # not held: the log has it for when a request needs this user
                p = self._profiles[e.user_id] = self._new()
            self._add(p, e, position_weight)
            n += 1
        return n

    def begin_load(self, user_id: str) -> None:
        """A read of ``user_id``'s events from the log starts: hold back their commits until it ends."""
        self._loading.setdefault(user_id, [])

    def read_back(self, logged: Iterable[EventRow], position_weight: Callable[[int], float] | None = None
                  ) -> ReadBack:
        """A profile from a user's logged rows (`EventStore.users_rows`). It reads only what does not
        change (the items, the half-life), so it runs on the log's reader thread: a long history rebuilt
        on the event loop held every stream still for as long as it took."""
        seen: set[str] = set()
        kept = []
        for row in logged:
            if row[0] in seen or not self._places(row[3]):
                continue
            seen.add(row[0])
            kept.append(row)
        return ReadBack(self._rebuilt(kept, _per_position(position_weight)), frozenset(seen))

    def finish_load(self, user_id: str, loaded: ReadBack,
                    position_weight: Callable[[int], float] | None = None) -> UserProfile:
        """The read-back profile plus the events committed during the read that it did not see; held from
        now on (an empty one too: a user without history is not read again)."""
        held_back = self._loading.pop(user_id, [])
        p, done = loaded.profile, set(loaded.ids)
        weight = _per_position(position_weight)
        for e in held_back:
            if e.event_id not in done and self._places(e.item_id):
                done.add(e.event_id)
                self._add(p, e, weight)
        self._profiles[user_id] = p
        while self.capacity is not None and len(self._profiles) > self.capacity:
            self._profiles.popitem(last=False)
        return p

    def abort_load(self, user_id: str) -> None:
        """The read failed: drop what was held back (the log has it) and hold nothing for the user."""
        self._loading.pop(user_id, None)

    def _rebuilt(self, rows: Sequence[EventRow], position_weight: Callable[[int], float] | None
                 ) -> UserProfile:
        """A profile from a user's whole history at once: what `_add` per event gives, computed as one
        sum over the rows' columns. Decaying everything to each event's time telescopes: every
        contribution ends decayed from its own time to the latest one's, so the per-event rescaling of
        every table (most of the cost of a read back from the log, benchmarks/profile_reads.py) is done
        once per contribution; and the weight rules run once per (type, position) the history holds."""
        p = self._new()
        p.events = len(rows)
        if not rows:
            return p
        _, requests, _, item_col, type_col, position_col, time_col = zip(*rows, strict=True)
        kinds = list(zip(type_col, position_col, strict=True))
        weight_of = {k: _event_weight(*k, position_weight) for k in set(kinds)}
        examined_of = {pos: _examined(pos, position_weight) for pos in set(position_col)}
        weight = np.array([weight_of[k] for k in kinds], np.float64)
        shown = np.array(type_col) == int(EventType.IMPRESSION)  # an int: against the enum numpy is slow
        ids = np.array(item_col, np.int64)
        at = np.array(time_col, np.float64)
        p.shown.replay((Impressions.key(r, i), i, examined_of[pos], t in INTERACTIONS)
                       for r, i, t, pos in zip(requests, item_col, type_col, position_col, strict=True)
                       if t in REMEMBERED)
        added = np.flatnonzero(shown | (weight > 0))  # `UserProfile.add` skips the rest
        if not added.size:
            return p
        p.last_ms = int(at[added].max())  # timestamps are never negative (server.convert)
        decay = 0.5 ** ((p.last_ms - at) / self.half_life_ms)
        items, ages = self.items, decay.tolist()
        for i in added[shown[added]].tolist():
            for a in items.attrs_of(item_col[i]):
                p.seen[a] = p.seen.get(a, 0.0) + ages[i]
        p.seen_total = float(decay[shown].sum())
        acts = added[~shown[added]]
        w, acted = weight[acts] * decay[acts], ids[acts]
        p.interactions, p.mass = int(acts.size), float(w.sum())
        p.centroid += w @ items.vectors[acted].astype(np.float64)
        for wi, item_id in zip(w.tolist(), acted.tolist(), strict=True):
            for c in items.classes[item_id]:
                p.classes[c] = p.classes.get(c, 0.0) + wi
            for a in items.attrs_of(item_id):
                p.attrs[a] = p.attrs.get(a, 0.0) + wi
        bins = items.prices.bins[acted]
        p.price += np.bincount(bins[bins >= 0], w[bins >= 0], PRICE_BINS)
        return p

    def _places(self, item_id: int) -> bool:
        """Whether the item is in this catalog (a log written against another is skipped)."""
        return 0 <= item_id < self._n_items

    def _new(self) -> UserProfile:
        return UserProfile(np.zeros(self.items.vectors.shape[1]))

    def _add(self, p: UserProfile, e: Event, position_weight: Callable[[int], float] | None) -> None:
        _remember(p, e, position_weight)
        p.add(self.items, e.item_id, _event_weight(e.type, e.position, position_weight), e.timestamp_ms,
              self.half_life_ms, shown=e.type == EventType.IMPRESSION)

    def get(self, user_id: str) -> UserProfile | None:
        p = self._profiles.get(user_id) if user_id else None
        if p is not None:
            self._profiles.move_to_end(user_id)
        return p

    def for_request(self, user_id: str, recent_item_ids: Sequence[int], now_ms: int) -> UserProfile | None:
        """The user's profile plus this request's recently viewed items; None when there is nothing to
        personalise on (no user history and no recent items: today's ranking)."""
        stored = self.get(user_id)
        if recent_item_ids:
            if stored is not None:
                # The history is decayed to its own last event; the views are weighed now. A user back
                # after weeks away must not have their old history outweigh today's session.
                stored = stored.decayed_to(now_ms, self.half_life_ms)
            session = self._new()
            for i in recent_item_ids:
                session.add(self.items, int(i), VIEW_WEIGHT, now_ms, self.half_life_ms)
            session.events = 0  # views are not logged events: the version counts the user's log only
            stored = session if stored is None else stored.merged(session)
        if stored is None or stored.mass <= 0 or not math.isfinite(stored.mass):
            return None
        return stored


def _per_position(position_weight: Callable[[int], float] | None) -> Callable[[int], float] | None:
    """The weights of one batch, each position's computed once: the policy learns from a batch before
    the profiles take it, so they do not change within one, and recomputing them for every event was
    most of the cost of rebuilding a profile from the log (benchmarks/profile_reads.py)."""
    return functools.cache(position_weight) if position_weight is not None else None


def _remember(p: UserProfile, e: Event, position_weight: Callable[[int], float] | None) -> None:
    """Keep an impression for the taste model, or mark the one an interaction was on. An impression sent
    twice keeps what the first learned; an interaction whose impression is not (or no longer) held is
    kept as a clicked impression of its own (a gateway may send the click first)."""
    if e.type not in REMEMBERED:
        return
    interaction = e.type in INTERACTIONS
    if (slot := p.shown.find(e.request_id, e.item_id)) >= 0:
        if interaction:
            p.shown.mark_clicked(slot)
        return
    p.shown.add(e.request_id, e.item_id, _examined(e.position, position_weight), interaction)


def _event_weight(kind: int, position: int, position_weight: Callable[[int], float] | None) -> float:
    """An event's weight in the profile: its type's, lifted by the inverse propensity of its position."""
    weight = EVENT_WEIGHT[kind]
    if weight and position_weight is not None:
        weight *= position_weight(position)
    return weight


def _examined(position: int, position_weight: Callable[[int], float] | None) -> float:
    """How likely an event's position was examined (1 without a policy's estimate)."""
    return 1.0 / position_weight(position) if position_weight is not None else 1.0

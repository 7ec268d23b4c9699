from __future__ import annotations

import numpy as np
import pytest

from feedback.events import Event, EventType
from feedback.profile import PRICE_BINS, ItemColumns, ProfileBook, log_prices

VECTORS = np.eye(4, dtype=np.float32)
ITEMS = ItemColumns.of(VECTORS, ["Sofas", "Beds|Sofas", "", float("nan")],
                       np.array([10.0, 20.0, 300.0, np.nan]))
DAY_MS = 86_400_000


def ev(i: int, item: int, type_: EventType = EventType.CLICK, user: str = "u", at: int = 0) -> Event:
    return Event(f"e{i}", "", user, item, type_, 1, at)


def test_log_prices_leave_missing_and_non_positive_prices_unknown() -> None:
    out = log_prices(np.array([1.0, np.e, np.nan, 0.0, -5.0, np.inf]))
    assert out[:2] == pytest.approx([0.0, 1.0]) and np.isnan(out[2:]).all()


def test_price_scale_bins_log_prices_and_interactions_fill_their_bins() -> None:
    scale = ITEMS.prices
    assert scale.bins.tolist()[:3] == [0, scale.bins[1], PRICE_BINS - 1] and scale.bins[3] == -1  # NaN
    assert 0 < scale.bins[1] < PRICE_BINS - 1
    book = ProfileBook(ITEMS)
    book.apply([ev(0, 0), ev(1, 1, EventType.PURCHASE), ev(2, 3)])  # item 3 has no price
    p = book.get("u")
    assert p.price.sum() == pytest.approx(5.0) and p.price[0] == 1.0 and p.price[scale.bins[1]] == 4.0


def test_profile_weighs_events_by_type_and_splits_multi_valued_classes() -> None:
    book = ProfileBook(ITEMS)
    book.apply([ev(0, 0), ev(1, 1, EventType.PURCHASE), ev(2, 2, EventType.IMPRESSION), ev(3, 3)])
    p = book.get("u")
    assert p is not None and p.events == 4
    assert p.mass == pytest.approx(1 + 4 + 1)  # impressions weigh nothing
    assert p.classes == pytest.approx({"Sofas": 5.0, "Beds": 4.0})  # "" and NaN: no class
    assert p.centroid.tolist() == pytest.approx([1, 4, 0, 1])
    assert book.get("nobody") is None and book.get("") is None


def test_older_interactions_decay_with_the_half_life() -> None:
    book = ProfileBook(ITEMS, half_life_s=86_400.0)
    book.apply([ev(0, 0, at=0), ev(1, 1, at=2 * DAY_MS)])  # the first is two half-lives old
    p = book.get("u")
    assert p.centroid[:2].tolist() == pytest.approx([0.25, 1.0])
    book.apply([ev(2, 2, at=DAY_MS)])  # arrives late: added at its decayed weight
    assert p.centroid[2] == pytest.approx(0.5) and p.last_ms == 2 * DAY_MS


def test_for_request_adds_recent_items_and_cold_start_gets_none() -> None:
    book = ProfileBook(ITEMS)
    assert book.for_request("new-user", (), 0) is None
    session = book.for_request("new-user", (2,), 0)
    assert session is not None and session.events == 0 and session.centroid[2] > 0
    book.apply([ev(0, 0)])
    merged = book.for_request("u", (2,), 0)
    assert merged.events == 1 and merged.centroid[0] > 0 and merged.centroid[2] > 0
    assert book.get("u").centroid[2] == 0  # the stored profile is not changed by a request
    book.apply([ev(9, 1, user="w", type_=EventType.IMPRESSION)])
    assert book.for_request("w", (), 0) is None  # only impressions: nothing to personalise on


def test_a_users_old_history_is_decayed_to_now_beside_todays_views() -> None:
    book = ProfileBook(ITEMS, half_life_s=7 * 86_400.0)
    book.apply([ev(0, 0)])  # one click on item 0, ten half-lives before the request
    mass = book.get("u").mass
    merged = book.for_request("u", (2,), 70 * DAY_MS)
    history = merged.centroid[0] / (merged.centroid[0] + merged.centroid[2])
    assert history < 0.01  # 2**-10 of the click's weight against a view now; it was 2/3 before
    fresh = book.for_request("u", (2,), 0)
    assert fresh.centroid[0] / (fresh.centroid[0] + fresh.centroid[2]) > 0.5
    assert book.get("u").last_ms == 0 and book.get("u").mass == mass  # the book's profile is not changed


def test_events_for_items_outside_the_catalog_are_skipped() -> None:
    book = ProfileBook(ITEMS)
    assert book.apply([ev(0, 99), ev(1, -1), ev(2, 0, user="")]) == 0
    assert len(book) == 0


def test_attribute_values_are_normalised_and_missing_features_give_none() -> None:
    from feedback.profile import attribute_values

    assert attribute_values("Color:Navy|feature_2:trundle|material: oak |color:navy") == (
        "color:navy", "feature:trundle", "material:oak")
    assert attribute_values("") == () and attribute_values(float("nan")) == ()


def test_profile_learns_attribute_affinities() -> None:
    items = ItemColumns.of(VECTORS, ["A", "A", "A", "A"], np.array([1.0, 2, 3, 4]),
                           ["color:navy|material:oak", "color:red", "", "color:navy"])
    book = ProfileBook(items)
    book.apply([ev(0, 0, EventType.PURCHASE), ev(1, 1)])
    p = book.get("u")
    assert p.attrs == pytest.approx({"color:navy": 4.0, "material:oak": 4.0, "color:red": 1.0})
    from pipeline.personalize import Personalizer

    scores = Personalizer(items, 1.0).scores(p, np.array([2, 3]))
    assert scores[1] > scores[0]  # the unseen navy item beats the featureless one


def same_profile(a: object, b: object) -> bool:
    """Equal up to the float sums' order: a profile read back from the log is summed in one pass."""
    return (a.events, a.interactions, a.last_ms) == (b.events, b.interactions, b.last_ms) \
        and a.classes == pytest.approx(b.classes) and a.attrs == pytest.approx(b.attrs) \
        and a.seen == pytest.approx(b.seen) and a.seen_total == pytest.approx(b.seen_total) \
        and np.allclose(a.centroid, b.centroid) and a.mass == pytest.approx(b.mass) \
        and np.allclose(a.price, b.price) and same_impressions(a.shown, b.shown)


def same_impressions(a: object, b: object) -> bool:
    ids_a, examined_a, clicked_a = a.arrays()
    ids_b, examined_b, clicked_b = b.arrays()
    return (a.size, a.oldest, a.changes) == (b.size, b.oldest, b.changes) \
        and np.array_equal(a.keys[:a.size], b.keys[:b.size]) and np.array_equal(ids_a, ids_b) \
        and np.allclose(examined_a, examined_b) and np.array_equal(clicked_a, clicked_b)


@pytest.mark.parametrize("seed", range(6))
def test_a_profile_read_back_in_one_pass_equals_one_fed_event_by_event(seed: int) -> None:
    """The read-back path sums a history at once (`ProfileBook._rebuilt`); the commit path adds events
    one at a time. Histories with late events, repeated impressions, clicks without an impression, more
    impressions than the window holds, featureless and unpriced items must give the same profile."""
    rng = np.random.default_rng(seed)
    items = ItemColumns.of(rng.standard_normal((6, 4)).astype(np.float32),
                           ["Sofas", "Beds|Sofas", "", float("nan"), "Rugs", "Sofas"],
                           np.array([10.0, 20.0, 300.0, np.nan, 5.0, 0.0]),
                           ["color:navy|material:oak", "color:red", "", None, "color:navy", "style:modern"])
    n = int(rng.integers(1, 1400))
    kinds = rng.choice(list(EventType), n, p=[0.7, 0.2, 0.05, 0.05])
    late = rng.integers(0, 2 * DAY_MS, n) * (rng.random(n) < 0.1)  # a tenth arrive up to two days late
    at = np.maximum(np.cumsum(rng.integers(0, 6 * 3_600_000, n)) - late, 0)
    events = [Event(f"e{i}", f"r{rng.integers(0, n // 4 + 1)}", "u", int(rng.integers(0, 6)), EventType(k),
                    int(rng.integers(0, 12)), int(t)) for i, (k, t) in enumerate(zip(kinds, at, strict=True))]
    weight = lambda pos: 1.0 + 0.3 * pos  # noqa: E731 (an inverse propensity that grows down the list)
    one_by_one = ProfileBook(items, half_life_s=2 * 86_400.0)
    one_by_one.apply(events, weight)
    read_back = ProfileBook(items, half_life_s=2 * 86_400.0, capacity=4)
    read_back.begin_load("u")
    loaded = read_back.read_back([e.row() for e in events], weight)
    assert same_profile(read_back.finish_load("u", loaded, weight), one_by_one.get("u"))


def test_a_bounded_book_leaves_users_it_does_not_hold_to_the_log_and_drops_the_least_recently_used() -> None:
    book = ProfileBook(ITEMS, capacity=2)
    assert book.apply([ev(0, 0, user="a")]) == 0 and not book.holds("a")  # not held: the log has it
    for user in ("a", "b"):
        book.begin_load(user)
        book.finish_load(user, book.read_back([ev(1, 1, user=user).row()]))
    assert book.get("a") is not None  # "a" used last: "b" is the least recently used
    book.begin_load("c")
    empty = book.finish_load("c", book.read_back([]))  # a user without history is held too: not read again
    assert empty.events == 0 and book.holds("c") and book.holds("a") and not book.holds("b")
    assert book.apply([ev(2, 0, user="a"), ev(3, 1, user="b")]) == 1 and book.get("a").events == 2


def test_a_load_adds_events_committed_during_the_read_once_whether_or_not_the_read_saw_them() -> None:
    logged = [ev(i, i % 3, EventType.CLICK if i % 2 else EventType.IMPRESSION, at=i * 1000) for i in range(6)]
    later = [ev(i, i % 3, at=i * 1000) for i in range(6, 9)]
    whole = ProfileBook(ITEMS)  # unbounded: fed every event once, in order
    whole.apply([*logged, *later])
    book = ProfileBook(ITEMS, capacity=10)
    book.begin_load("u")
    # Commits during the read: e4, e5 (the read saw them too) and e6-e8 (it did not).
    assert book.apply([*logged[4:], *later]) == 0 and not book.holds("u")
    rebuilt = book.finish_load("u", book.read_back([e.row() for e in logged]))
    assert rebuilt.events == 9 and same_profile(rebuilt, whole.get("u"))
    book.apply([ev(9, 0, at=9000)])  # held now: later commits go straight in
    assert book.get("u").events == 10
    book.begin_load("v")
    book.abort_load("v")  # a failed read holds nothing back and nothing for the user
    assert book.apply([ev(10, 0, user="v")]) == 0 and not book.holds("v")

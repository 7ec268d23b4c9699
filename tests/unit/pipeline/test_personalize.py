from __future__ import annotations

import numpy as np
import pytest

from feedback.events import Event, EventType
from feedback.profile import ItemColumns, ProfileBook
from pipeline.diversify import mmr
from pipeline.personalize import Personalizer

RNG = np.random.default_rng(0)
VECTORS = RNG.normal(size=(30, 8)).astype(np.float32)
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)
ITEMS = ItemColumns.of(VECTORS, ["Sofas" if i % 3 == 0 else "Beds" for i in range(30)],
                       np.linspace(10, 1000, 30))


def profile_of(items: list[int]):
    book = ProfileBook(ITEMS)
    book.apply([Event(f"e{i}", "", "u", item, EventType.CLICK, 1, 0) for i, item in enumerate(items)])
    return book.get("u")


def test_no_profile_or_zero_weight_is_no_personal_score() -> None:
    ids = np.arange(10)
    assert Personalizer(ITEMS, 0.3).scores(None, ids) is None
    assert Personalizer(ITEMS, 0.0).scores(profile_of([0]), ids) is None


def test_items_like_the_history_score_higher() -> None:
    p = profile_of([0, 3, 6])  # Sofas, cheap
    scores = Personalizer(ITEMS, 0.3).scores(p, np.arange(30))
    sofas = scores[np.arange(30) % 3 == 0]
    assert scores[[0, 3, 6]].max() == scores.max()  # clicked: near the centroid, its class, its price
    assert sofas.mean() > scores[np.arange(30) % 3 != 0].mean()
    assert float(scores.max()) <= 0.3 + 1e-6  # the weight bounds the lift


def test_personal_scores_reorder_mmr_and_the_parts_add_up_to_the_score() -> None:
    relevance = np.linspace(1.0, 0.0, 30).astype(np.float32)
    plain = [p.index for p in mmr(relevance, VECTORS, 10, 1.0)]
    assert plain == list(range(10))
    personal = Personalizer(ITEMS, 2.0).scores(profile_of([27, 24]), np.arange(30))
    picks = list(mmr(relevance, VECTORS, 10, 0.8, personal))
    assert [p.index for p in picks] != plain
    for pick in picks:
        parts = dict(pick.components(0.8))
        assert set(parts) == {"relevance", "personal", "redundancy"}
        assert sum(parts.values()) == pytest.approx(pick.score, abs=1e-5)
    unpersonal = list(mmr(relevance, VECTORS, 5, 0.8))
    assert all("personal" not in dict(p.components(0.8)) for p in unpersonal)
    assert all(sum(dict(p.components(0.8)).values()) == pytest.approx(p.score, abs=1e-5) for p in unpersonal)


def test_relevance_gate_opens_above_the_mean_only() -> None:
    from pipeline.personalize import relevance_gate

    rel = np.array([0.0, 0.0, 0.0, 0.0, 1.0])  # one item 2σ above the mean, the rest below it
    gate = relevance_gate(rel)
    assert gate[4] == pytest.approx(1.0) and (gate[:4] == 0).all()
    assert (relevance_gate(np.ones(5)) == 1).all()  # all equally relevant: taste may order them all
    ids = np.arange(5)
    gated = Personalizer(ITEMS, 1.0).scores(profile_of([0, 1, 2, 3]), ids, relevance=rel)
    assert (gated[:4] == 0).all() and gated[4] != 0


def test_attribute_preference_is_a_rate_once_impressions_are_logged() -> None:
    items = ItemColumns.of(VECTORS[:4], ["A"] * 4, np.array([1.0, 1, 1, 1]),
                           ["color:navy", "color:red", "color:navy", "color:red"])
    book = ProfileBook(items)
    shown = [Event(f"i{k}", "", "u", k % 2, EventType.IMPRESSION, 1, 0) for k in range(20)]
    book.apply([*shown, Event("c", "", "u", 1, EventType.CLICK, 2, 0)])  # navy shown 10×, never clicked
    p = book.get("u")
    assert p.seen == pytest.approx({"color:navy": 10.0, "color:red": 10.0}) and p.seen_total == 20

    def pref(profile, values: tuple[str, ...]) -> float:
        return Personalizer._attr_pref(profile, values, sum(profile.attrs.values()))

    assert pref(p, ("color:navy",)) < 0 < pref(p, ("color:red",))
    assert pref(p, ()) == 0.0
    scores = Personalizer(items, 1.0).scores(p, np.array([2, 3]))
    assert scores[1] > scores[0]  # the unseen red item beats the unseen navy one
    # Without impressions in the log: the share of the attribute weight the item covers.
    no_shows = ProfileBook(items)
    no_shows.apply([Event("c", "", "u", 1, EventType.CLICK, 2, 0)])
    assert pref(no_shows.get("u"), ("color:red",)) == 1.0 and pref(no_shows.get("u"), ("color:navy",)) == 0


def test_price_fit_peaks_at_the_prices_interacted_with_and_narrows_with_evidence() -> None:
    prices = np.array([10.0, 20, 40, 80, 160, 320, 640, np.nan])
    items = ItemColumns.of(np.eye(8, dtype=np.float32), ["A"] * 8, prices)
    personalizer = Personalizer(items, 1.0)

    def fit(clicked: list[int]) -> np.ndarray:
        book = ProfileBook(items)
        book.apply([Event(f"e{i}", "", "u", item, EventType.CLICK, 1, 0) for i, item in enumerate(clicked)])
        return personalizer._price_fit(book.get("u"), items.prices.bins)

    one, many = fit([3]), fit([3] * 20)
    assert one.argmax() == 3 and many.argmax() == 3 and one[3] == many[3] == 1.0
    assert one[7] == 0 and many[7] == 0  # no price: no fit
    assert many[0] < one[0] and many[6] < one[6]  # twenty clicks at one price say more than one
    assert (np.diff(one[:4]) > 0).all() and (np.diff(one[3:7]) < 0).all()
    both = fit([0] * 10 + [6] * 10)  # cheap and dear, nothing between: both kept, the middle not favoured
    assert both[0] > both[3] and both[6] > both[3]

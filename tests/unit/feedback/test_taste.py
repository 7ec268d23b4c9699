from __future__ import annotations

import numpy as np
import pytest

from feedback.events import Event, EventType
from feedback.profile import SHOWN_WINDOW, Impressions, ItemColumns, ProfileBook
from feedback.taste import MAX_COLUMNS, PRICE_BUMPS, TasteModel, fit_taste
from pipeline.personalize import Personalizer

# 40 items: colour alternates navy / red, prices climb from $20 to $2,000; one class, one direction.
N = 40
COLOURS = ["navy" if i % 2 == 0 else "red" for i in range(N)]
ITEMS = ItemColumns.of(np.tile(np.eye(1, 8, dtype=np.float32), (N, 1)), ["Sofas"] * N,
                       np.geomspace(20, 2000, N), [f"color:{c}|material:oak" for c in COLOURS])


Record = tuple[int, float, bool]  # (item id, examination probability, clicked)


def fit(items: ItemColumns, records: list[Record]) -> TasteModel | None:
    ids, examined, clicked = zip(*records, strict=True)
    return fit_taste(items, np.array(ids), np.array(examined), np.array(clicked))


def shown(clicked: set[int], ids: range = range(N)) -> list[Record]:
    return [(i, 1.0, i in clicked) for i in ids]


def test_no_model_until_two_clicks_and_a_skip() -> None:
    assert fit(ITEMS, shown({0})) is None
    assert fit(ITEMS, shown(set(range(N)))) is None
    assert fit(ITEMS, shown({0, 2})) is not None


def test_the_model_learns_the_colour_clicked_and_the_one_skipped() -> None:
    model = fit(ITEMS, shown({i for i in range(N) if COLOURS[i] == "navy" and i % 4 == 0}))
    assert model is not None
    logits = model.logits(ITEMS, np.arange(N))
    navy = np.array([c == "navy" for c in COLOURS])
    # Neighbours in price, one of each colour: navy above red every time.
    assert all(logits[i] > logits[i + 1] for i in range(0, N, 2))
    assert logits[navy].mean() > logits[~navy].mean()


def test_columns_are_the_values_of_items_interacted_with() -> None:
    model = fit(ITEMS, shown({0, 4}))  # navy oak items only: red gets no column, reads as baseline
    assert model is not None and set(model.vocab) == {"color:navy", "material:oak"}


def test_columns_are_capped_at_the_values_interacted_with_most() -> None:
    # Every item its own brand. Two brands that sort late by name (b81, b82) are clicked three times,
    # every other once: the cap keeps those two and then the first 62 of the rest by name (the tie-break
    # that makes a fit reproducible), not the first 64 by name.
    n = MAX_COLUMNS + 20
    items = ItemColumns.of(np.tile(np.eye(1, 8, dtype=np.float32), (n, 1)), ["Sofas"] * n,
                           np.full(n, 100.0), [f"brand:b{i}" for i in range(n)])
    records = [(i, 1.0, True) for i in range(n - 1)]
    records += [(n - 3, 1.0, True), (n - 2, 1.0, True)] * 2
    records += [(n - 1, 1.0, False)]
    model = fit(items, records)
    once = sorted({f"brand:b{i}" for i in range(n - 1)} - {f"brand:b{n - 3}", f"brand:b{n - 2}"})
    assert model is not None
    assert set(model.vocab) == {f"brand:b{n - 3}", f"brand:b{n - 2}", *once[: MAX_COLUMNS - 2]}
    assert model.weights.shape == (MAX_COLUMNS + PRICE_BUMPS,)


def test_the_model_learns_a_price_taste_from_what_was_shown_and_skipped() -> None:
    dear = {i for i in range(30, N)}  # clicks only at the dear end, both colours
    model = fit(ITEMS, shown(set(list(dear)[::3])))
    assert model is not None
    logits = model.logits(ITEMS, np.arange(N))
    assert logits[30:].mean() > logits[:10].mean() + 1.0
    assert np.argmax(logits) >= 25


def test_a_skip_where_few_look_counts_less_than_one_at_the_top() -> None:
    # Navy clicked twice; red shown often and skipped: at examined positions, or where nobody looks.
    def red_against_navy(examined: float) -> float:
        records = [(0, 1.0, True), (2, 1.0, True), (4, 1.0, False)]
        records += [(i, examined, False) for i in range(1, 20, 2)]
        model = fit(ITEMS, records)
        assert model is not None
        return float(np.diff(model.logits(ITEMS, np.array([0, 1])))[0])
    assert red_against_navy(1.0) < red_against_navy(0.05) < 0.0


def test_profiles_keep_the_latest_impressions_and_mark_the_clicked_ones() -> None:
    book = ProfileBook(ITEMS)
    events = [Event(f"i{r}-{i}", f"r{r}", "u", i, EventType.IMPRESSION, i % 10 + 1, r)
              for r in range(SHOWN_WINDOW // N + 2) for i in range(N)]
    last = f"r{SHOWN_WINDOW // N + 1}"
    events += [Event("c", last, "u", 4, EventType.CLICK, 5, 99),
               Event("p", last, "u", 6, EventType.PURCHASE, 7, 99),
               # r0's impressions are gone: the click is kept as a clicked impression of its own
               Event("x", "r0", "u", 8, EventType.CLICK, 9, 99),
               Event("i-again", last, "u", 4, EventType.IMPRESSION, 5, 100)]  # a repeat: keeps the click
    book.apply(events, position_weight=lambda pos: float(pos))
    profile = book.get("u")
    assert profile is not None and len(profile.shown) == SHOWN_WINDOW
    impressions = profile.shown
    assert impressions.find("r0", 0) == -1 and impressions.find(last, 0) >= 0
    ids, examined, clicked = impressions.arrays()
    assert sorted(ids[clicked].tolist()) == [4, 6, 8] and clicked.sum() == 3
    assert examined[impressions.find(last, 4)] == pytest.approx(1.0 / 5)  # 1 / the inverse propensity
    assert examined[impressions.find("r0", 8)] == pytest.approx(1.0 / 9)


def test_a_click_before_its_impression_is_still_a_click() -> None:
    book = ProfileBook(ITEMS)
    book.apply([Event("c", "r", "u", 3, EventType.CLICK, 2, 1),
                Event("i", "r", "u", 3, EventType.IMPRESSION, 2, 1)])
    profile = book.get("u")
    assert profile is not None and len(profile.shown) == 1
    ids, _, clicked = profile.shown.arrays()
    assert ids.tolist() == [3] and clicked.tolist() == [True]


def test_the_model_is_fitted_once_per_change_of_the_impressions() -> None:
    book = ProfileBook(ITEMS)
    book.apply([Event(f"i{i}", "r", "u", i, EventType.IMPRESSION, 1, 1) for i in range(N)]
               + [Event(f"c{i}", "r", "u", i, EventType.CLICK, 1, 1) for i in (0, 2)])
    profile, personalizer = book.get("u"), Personalizer(ITEMS, 1.0)
    assert profile is not None
    personalizer.scores(profile, np.arange(N))
    first = profile.shown.fitted
    personalizer.scores(profile, np.arange(10))
    assert profile.shown.fitted is first  # the same fit, not a new one
    book.apply([Event("c4", "r", "u", 4, EventType.CLICK, 1, 2)])
    personalizer.scores(profile, np.arange(N))
    assert profile.shown.fitted is not first and profile.shown.fitted[0] == profile.shown.changes


def test_the_personal_score_carries_the_taste_model() -> None:
    book = ProfileBook(ITEMS)
    events = [Event(f"i{r}-{i}", f"r{r}", "u", i, EventType.IMPRESSION, 1, r)
              for r in range(3) for i in range(N)]
    events += [Event(f"c{r}-{i}", f"r{r}", "u", i, EventType.CLICK, 1, r) for r in range(3) for i in (0, 2)]
    book.apply(events)
    scores = Personalizer(ITEMS, 1.0).scores(book.get("u"), np.array([10, 11]))
    assert scores is not None and scores[0] > scores[1]  # navy over red at nearly the same price
    taste = Personalizer(ITEMS, 1.0)._taste(book.get("u"), np.array([10, 11]))  # type: ignore[arg-type]
    assert taste[0] > 0 > taste[1]


def test_a_full_window_overwrites_its_oldest_and_still_counts_changes() -> None:
    shown = Impressions()
    total = 2 * SHOWN_WINDOW + 7
    for r in range(total):
        shown.add(f"r{r}", r % N, 1.0, r % 3 == 0)
    assert len(shown) == SHOWN_WINDOW and shown.changes == total
    arrays = (shown.keys, shown.item_ids, shown.examined, shown.clicked)
    assert sum(a.nbytes for a in arrays) == 17 * SHOWN_WINDOW  # 17 bytes an impression
    assert shown.find(f"r{total - SHOWN_WINDOW - 1}", (total - SHOWN_WINDOW - 1) % N) == -1  # gone
    assert shown.find(f"r{total - SHOWN_WINDOW}", (total - SHOWN_WINDOW) % N) >= 0  # the oldest kept
    assert shown.find(f"r{total - 1}", (total - 1) % N) >= 0
    # A full window's new impression is a change: the taste model is refitted on it.
    profile = ProfileBook(ITEMS)
    profile.apply([Event(f"i{r}", f"r{r}", "u", r % N, EventType.IMPRESSION, 1, r) for r in range(total)]
                  + [Event(f"c{r}", f"r{r}", "u", r % N, EventType.CLICK, 1, r) for r in range(0, total, 3)])
    user, personalizer = profile.get("u"), Personalizer(ITEMS, 1.0)
    assert user is not None
    personalizer.scores(user, np.arange(N))
    first = user.shown.fitted
    profile.apply([Event("late", "r-late", "u", 1, EventType.IMPRESSION, 1, total)])
    personalizer.scores(user, np.arange(N))
    assert user.shown.fitted is not first and user.shown.fitted[0] == user.shown.changes

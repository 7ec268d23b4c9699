"""A per-user taste model: L2-regularised logistic regression of "clicked" on the user's examined
impressions, over what an item is (its attribute values and bumps over log price), fitted when a
personalised list is ranked.

The profile's other parts count what the user interacted with; this one also reads what they were
shown and passed over, so a colour or a price shown often and skipped counts against an item, and
features that travel together (a material that only comes in one colour) are told apart. Impressions
are weighted by the estimated probability their position was examined (`feedback.propensity`): a skip
at rank 9, which few look at, says little. Measured in the offline screen (docs/personalization.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import cast

import numpy as np

from feedback.profile import Impressions, ItemColumns

PRICE_BUMPS = 12  # Gaussian bumps over the catalog's log-price range
MIN_CLICKS = 2  # fewer clicks (or no skip) in the window: no model, the part reads 0
L2 = 0.5  # penalty on the weights (the intercept is free), in units of one examined impression
NEWTON_STEPS = 12
MAX_COLUMNS = 64  # attribute columns: the values the user interacted with most (bounds a fit's cost)


@dataclass(frozen=True)
class TasteModel:
    vocab: dict[str, int]  # attribute value -> its column; the price bumps follow them
    weights: np.ndarray  # (len(vocab) + PRICE_BUMPS,)

    def logits(self, items: ItemColumns, item_ids: np.ndarray) -> np.ndarray:
        """Each item's taste logit, without the intercept (only differences between items matter)."""
        return _features(items, item_ids, self.vocab) @ self.weights


def taste_of(items: ItemColumns, shown: Impressions) -> TasteModel | None:
    """The user's model, fitted on their impressions only after they change since the last fit."""
    if shown.fitted is None or shown.fitted[0] != shown.changes:
        shown.fitted = (shown.changes, fit_taste(items, *shown.arrays()))  # None while they say too little
    return cast(TasteModel | None, shown.fitted[1])


def fit_taste(items: ItemColumns, item_ids: np.ndarray, examined: np.ndarray, clicked: np.ndarray
              ) -> TasteModel | None:
    """The model for one user's recent impressions (per impression: the item, the probability its
    position was examined, whether it was interacted with), or None while they say too little."""
    clicked = np.asarray(clicked, dtype=np.float64)
    if clicked.sum() < MIN_CLICKS or clicked.sum() == len(clicked):
        return None
    ids = np.asarray(item_ids, dtype=np.int64)
    # Columns only for the values of items the user interacted with: a value never clicked has nothing
    # to tell apart from the baseline (the intercept), and a catalog's thousands of values would make
    # each fit cost hundreds of milliseconds instead of one or two.
    # At most MAX_COLUMNS of them: the values on the most interacted-with impressions in the window (an
    # impression counts once, whatever the interaction; ties by name, so a fit is reproducible). A fit
    # costs O(columns^3): ~3 ms at 64 against ~170 ms for a heavy user's ~900 values.
    liked = Counter(a for i in ids[clicked > 0] for a in items.attrs_of(int(i)))
    kept = sorted(liked, key=lambda a: (-liked[a], a))[:MAX_COLUMNS]
    vocab = {a: j for j, a in enumerate(sorted(kept))}
    x = _features(items, ids, vocab)
    x = np.hstack([x, np.ones((len(ids), 1))])  # intercept, last
    exam = np.asarray(examined, dtype=np.float64)
    penalty = np.full(x.shape[1], L2)
    penalty[-1] = 0.0
    w = np.zeros(x.shape[1])
    for _ in range(NEWTON_STEPS):  # Newton's method on the weighted, penalised log loss
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (exam * (p - clicked)) + penalty * w
        hess = (x * (exam * p * (1.0 - p))[:, None]).T @ x + np.diag(penalty + 1e-6)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return TasteModel(vocab, w[:-1])


def _features(items: ItemColumns, item_ids: np.ndarray, vocab: dict[str, int]) -> np.ndarray:
    scale = items.prices
    lo, hi = scale.centres[0], scale.centres[-1]
    centres = np.linspace(lo, hi, PRICE_BUMPS)
    width = scale.spread / 3.0
    x = np.zeros((len(item_ids), len(vocab) + PRICE_BUMPS))
    for r, i in enumerate(item_ids):
        for a in items.attrs_of(int(i)):
            if (j := vocab.get(a)) is not None:
                x[r, j] = 1.0
    lp = items.prices.log_price[item_ids]
    known = np.isfinite(lp)
    x[known, len(vocab):] = np.exp(-((lp[known, None] - centres[None, :]) ** 2) / (2.0 * width**2))
    return x

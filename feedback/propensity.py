"""Examination propensities by position, measured by randomisation, for inverse-propensity weighting.

A small share of personalised lists (`Policy.explore_share`) is served with its top ``k`` in random
order (RandTop-k). Within those lists every position holds, on average, equally relevant items, so the
clicks at position r divided by the clicks at position 1 estimate p(r) / p(1): how much less often
position r is examined (Joachims et al., "Unbiased Learning-to-Rank with Biased Feedback", 2017).

Until the randomised lists have clicks, a prior of ``1 / r`` holds the estimate (``prior_clicks`` clicks'
worth at position 1). The estimate is clipped to [``floor``, 1] and made non-increasing down the list,
so one noisy position can neither explode a weight nor invert the order.
"""

from __future__ import annotations

import numpy as np

MAX_POSITION = 10


class Propensities:
    def __init__(self, positions: int = MAX_POSITION, prior_clicks: float = 20.0, floor: float = 0.05
                 ) -> None:
        self.positions = positions
        self.prior = prior_clicks / np.arange(1, positions + 1)  # pseudo-clicks shaped like 1/r
        self.clicks = np.zeros(positions)
        self.floor = floor
        # The estimate changes only with a randomised click, and is read for every event a profile takes
        # (feedback.profile): computed once per click, not once per read.
        self._ratios: list[float] | None = None

    def observe_click(self, position: int) -> None:
        """A click at ``position`` (1-based) on a randomised list."""
        if 1 <= position <= self.positions:
            self.clicks[position - 1] += 1
            self._ratios = None

    def add_clicks(self, clicks: list[float]) -> None:
        """Clicks counted elsewhere, by position (a compacted log's, feedback.retention)."""
        n = min(len(clicks), self.positions)
        if n:
            self.clicks[:n] += clicks[:n]
            self._ratios = None

    def ratios(self) -> np.ndarray:
        """p(r) / p(1) for r = 1..positions."""
        c = self.clicks + self.prior
        p = np.clip(c / c[0], self.floor, 1.0)
        return np.minimum.accumulate(p)

    def weight(self, position: int, cap: float = 10.0) -> float:
        """Inverse-propensity weight of a click at ``position``: 1 at the top, at most ``cap``; a click
        at an unknown position (0) or below the measured ones counts as the last measured position."""
        if self._ratios is None:
            self._ratios = self.ratios().tolist()
        r = self._ratios
        p = r[-1] if not 1 <= position <= self.positions else r[position - 1]
        return min(1.0 / p, cap)

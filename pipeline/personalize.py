"""The personalise stage: how well each candidate matches the user's profile, as an additive score.

personal_i = weight · (cos(centroid, v_i) + class_share(c_i) + price_fit(p_i) + attr_pref(a_i) + taste_i) / 5

- cos: the item's embedding against the profile's centroid (what the user interacted with);
- class_share: the profile's share of weight in the item's class (the best of a multi-valued class);
- price_fit: the user's interactions smoothed over log price (a Gaussian kernel density, peak 1) at the
  item's price; the bandwidth is the catalog's log-price spread times (1 + w)^(-1/5), w the decayed
  event weight on priced items (a click 1, a purchase 4)
  (Silverman's rate): one click says little about the price a shopper wants, many say it closely, and a
  shopper who buys both cheap and dear keeps both. 0 where the item has no price;
- attr_pref: how the user treats the item's attribute values (colour, material, brand, style: whatever
  ``key:value`` features the catalog lists). Where the log has the user's impressions, it is the mean
  over the item's values of log(lift), clipped to [-1, 1]: lift = the value's interaction rate per
  time shown (interactions inverse-propensity weighted) over the user's own rate, smoothed by
  ``PRIOR_SHOWS`` impressions at that rate. A value shown often and never clicked falls below 0. A
  gateway that sends no impressions gets the share of the profile's attribute weight the item's values
  cover instead. 0 for an item without features;
- taste: the user's taste model (`feedback.taste`: a logistic regression of clicks on their examined
  impressions over attribute values and log price) read at each candidate, its logit z-scored over the
  candidates, halved and clipped to [-1, 1]. 0 until the user has clicked twice and skipped something.

Each part is in [-1, 1] or [0, 1]; all but taste (read relative to the other candidates) are the
same whatever else is in the list. MMR adds the score to the
normalised relevance (`pipeline.diversify`), where ±3σ of relevance spans one unit, so ``weight`` reads
as "how many units the best-matching item gains".

Taste reorders relevant items; it must not lift an irrelevant one. So the score is **gated by
relevance**: multiplied by ``clip(z / 2, 0, 1)``, z the candidate's relevance in standard deviations
above the list's mean. Below-average candidates get nothing, those 2σ above get all of it (a list whose
relevance is all equal gets all of it: taste then orders equals). (Measured in
the simulator, seed 0: without the gate a weight that mattered pulled same-colour items of the wrong
kind into the top ten, and NDCG against the users' own tastes fell below the unpersonalised ranking.)
No profile, or weight 0: no personal score, and the ranking is exactly the unpersonalised one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feedback.profile import ItemColumns, UserProfile
from feedback.taste import taste_of
from pipeline.diversify import Z_SPAN, normalise_z

SHUFFLED_TOP = 10  # an exploring list serves its first (up to) ten in random order
PRIOR_SHOWS = 3.0  # impressions' worth of the user's own rate an attribute value starts from


@dataclass(frozen=True)
class Personal:
    """How one request is personalised: whose profile, how strongly, and whether its top is shuffled
    (position-bias measurement; `feedback.propensity`) with a seed of its own."""

    profile: UserProfile
    weight: float
    explore_seed: int | None = None


class Personalizer:
    def __init__(self, items: ItemColumns, weight: float) -> None:
        self.items = items
        self.weight = weight

    def scores(self, profile: UserProfile | None, item_ids: np.ndarray, weight: float | None = None,
               relevance: np.ndarray | None = None) -> np.ndarray | None:
        """Personal score per candidate (gated by ``relevance``, the list's relevance scores, when
        given), or None when nothing personalises this list."""
        w = self.weight if weight is None else weight
        if profile is None or profile.mass <= 0 or w <= 0 or item_ids.size == 0:
            return None
        norm = float(np.linalg.norm(profile.centroid))
        vectors = self.items.vectors[item_ids]
        cos = vectors @ (profile.centroid / norm) if norm > 0 else np.zeros(item_ids.size)
        classes = self.items.classes
        class_share = np.array([max((profile.classes.get(c, 0.0) for c in classes[int(i)]), default=0.0)
                                for i in item_ids]) / profile.mass
        price_fit = self._price_fit(profile, self.items.prices.bins[item_ids])
        attr_total = sum(profile.attrs.values())  # once per list, not per candidate
        attr_pref = np.array([self._attr_pref(profile, self.items.attrs_of(int(i)), attr_total)
                              for i in item_ids])
        personal = w * (cos + class_share + price_fit + attr_pref + self._taste(profile, item_ids)) / 5.0
        if relevance is not None:
            personal = personal * relevance_gate(relevance)
        return personal.astype(np.float32)

    def _price_fit(self, profile: UserProfile, bins: np.ndarray) -> np.ndarray:
        mass = float(profile.price.sum())
        if mass <= 0:
            return np.zeros(bins.shape)
        scale = self.items.prices
        bandwidth = scale.spread * (1.0 + mass) ** -0.2
        gap = scale.centres[:, None] - scale.centres[None, :]
        density = np.exp(-(gap**2) / (2.0 * bandwidth**2)) @ profile.price
        fit = density[np.maximum(bins, 0)] / density.max()
        return np.where(bins >= 0, fit, 0.0)

    def _taste(self, profile: UserProfile, item_ids: np.ndarray) -> np.ndarray:
        model = taste_of(self.items, profile.shown)
        if model is None:
            return np.zeros(item_ids.size)
        logits = model.logits(self.items, item_ids)
        if float(np.ptp(logits)) < 1e-9:  # no difference between these candidates (not rounding noise)
            return np.zeros(item_ids.size)
        return np.clip((logits - logits.mean()) / float(logits.std()) / 2.0, -1.0, 1.0)

    @staticmethod
    def _attr_pref(profile: UserProfile, values: tuple[str, ...], total: float) -> float:
        """``values``' preference: the mean clipped log lift where impressions are logged, else the
        share ``total`` (the profile's attribute weight) they cover."""
        if not values:
            return 0.0
        attrs = profile.attrs
        if profile.seen_total > 0:
            rate = profile.mass / profile.seen_total
            seen = profile.seen
            lifts = [(attrs.get(a, 0.0) + PRIOR_SHOWS * rate) / ((seen.get(a, 0.0) + PRIOR_SHOWS) * rate)
                     for a in values]
            return float(np.clip(np.log(lifts), -1.0, 1.0).mean())
        return sum(attrs.get(a, 0.0) for a in values) / total if total > 0 else 0.0


def shuffle_top(top: list, seed: int) -> None:
    """An exploring list's first (up to) ``SHUFFLED_TOP`` picks, put in the random order ``seed`` gives
    (in place): the one shuffle the server and the offline screen share."""
    np.random.default_rng(seed).shuffle(top)  # type: ignore[arg-type]


def relevance_gate(relevance: np.ndarray) -> np.ndarray:
    """clip(z / 2, 0, 1) per candidate, z its relevance in standard deviations above the list's mean."""
    z = (normalise_z(relevance) - 0.5) * Z_SPAN
    return np.clip(z / 2.0, 0.0, 1.0)

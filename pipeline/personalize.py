"""The personalise stage: how well each candidate matches the user's profile, as an additive score.

personal_i = weight · (cos(centroid, v_i) + class_share(c_i) + band_share(b_i)) / 3

- cos: the item's embedding against the profile's centroid (what the user interacted with);
- class_share: the profile's share of weight in the item's class (the best of a multi-valued class);
- band_share: the profile's share of weight in the item's price band.

Each part is in [-1, 1] or [0, 1] and does not depend on the candidate list, so one item's personal
score is the same in every list. MMR adds it to the normalised relevance (`pipeline.diversify`), where
±3σ of relevance spans one unit, so ``weight`` reads as "how many units the best-matching item gains".
No profile, or weight 0: no personal score, and the ranking is exactly the unpersonalised one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feedback.profile import ItemColumns, UserProfile

SHUFFLED_TOP = 10  # an exploring list serves its first (up to) ten in random order


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

    def scores(self, profile: UserProfile | None, item_ids: np.ndarray, weight: float | None = None
               ) -> np.ndarray | None:
        """Personal score per candidate, or None when nothing personalises this list."""
        w = self.weight if weight is None else weight
        if profile is None or profile.mass <= 0 or w <= 0 or item_ids.size == 0:
            return None
        norm = float(np.linalg.norm(profile.centroid))
        vectors = self.items.vectors[item_ids]
        cos = vectors @ (profile.centroid / norm) if norm > 0 else np.zeros(item_ids.size)
        classes = self.items.classes
        class_share = np.array([max((profile.classes.get(c, 0.0) for c in classes[int(i)]), default=0.0)
                                for i in item_ids]) / profile.mass
        band_share = profile.bands[self.items.bands[item_ids]] / profile.mass
        return (w * (cos + class_share + band_share) / 3.0).astype(np.float32)

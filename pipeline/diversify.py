"""Maximal Marginal Relevance: balance relevance against redundancy with the items already chosen.

score_i = λ · (relevance_i + personal_i) − (1 − λ) · max_{j ∈ selected} cos(v_i, v_j)

relevance_i is the raw score z-scored over the request's candidates (`normalise_z`), so λ means the
same trade-off whatever the reranker's score spread; personal_i is the user's profile match
(`pipeline.personalize`), zero without a profile. Each pick carries the three terms, so a served item's
score is explained exactly by its parts.

Greedy and vectorised: each of the k steps is one numpy pass over the n candidates (O(k·n)), keeping a
running max-similarity vector, so there is no Python loop over candidates. The generator yields each
pick as soon as it is made, so the server can stream it before the next one is computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class MmrPick:
    index: int  # position in the candidate arrays
    score: float  # the MMR objective when it was picked
    relevance: float  # normalised relevance (`normalise_z`: 0.5 at the candidates' mean)
    redundancy: float  # max cosine similarity to the items picked before it
    personal: float = 0.0  # the profile match added to relevance

    def components(self, lam: float) -> tuple[tuple[str, float], ...]:
        """The score's additive parts: relevance, personal (when personalised) and redundancy."""
        parts = [("relevance", lam * self.relevance)]
        if self.personal:
            parts.append(("personal", lam * self.personal))
        parts.append(("redundancy", -(1.0 - lam) * self.redundancy))
        return tuple(parts)


Z_SPAN = 6.0  # standard deviations mapped onto one unit of relevance (mean -> 0.5)


def normalise_z(scores: np.ndarray) -> np.ndarray:
    """``0.5 + z / Z_SPAN``: a z-score over the candidates, so ±3σ spans the [0, 1] of a cosine.

    Min-max makes λ's effect depend on the two extreme candidates: one outlier score squeezes every
    other gap, and the same λ then diversifies far more on one query (or model) than another. The
    standard deviation is a property of the whole list, so λ trades relevance against redundancy on
    a scale that is stable across queries and models. Not clipped: monotone, so λ=1 keeps the order.
    """
    # float64: the float32 std of n equal float32 scores is often ~1e-8, not 0, and a tie would then
    # come out as +-1/Z_SPAN. The tolerance is relative: a tie up to float32 rounding is a tie.
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores.astype(np.float32)
    mean, std = float(scores.mean()), float(scores.std())
    if std <= 1e-6 * max(1.0, abs(mean)):
        return np.ones(scores.shape, np.float32)
    return (0.5 + (scores - mean) / (Z_SPAN * std)).astype(np.float32)


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float,
        personal: np.ndarray | None = None) -> Iterator[MmrPick]:
    """Yield up to k picks of n candidates; `vectors`: L2-normalised (n, d), `relevance`: raw scores (n,),
    `personal`: per-candidate profile match added to the normalised relevance (None: none)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    rel = normalise_z(relevance)
    pers = np.zeros_like(rel) if personal is None else np.asarray(personal, dtype=np.float32)
    gain = rel + pers
    n = rel.shape[0]
    k = min(k, n)
    if k <= 0:
        return
    vectors = np.asarray(vectors, dtype=np.float32)
    max_sim = np.zeros(n, dtype=np.float32)  # no redundancy before the first pick
    available = np.ones(n, dtype=bool)
    for step in range(k):
        objective = lam * gain - (1.0 - lam) * max_sim
        objective = np.where(available, objective, -np.inf)
        # A tie on the objective goes to the more relevant item (at λ = 0 every first objective ties),
        # then to the earlier candidate (the candidates come in retrieval order).
        ties = np.flatnonzero(objective == objective.max())
        i = int(ties[np.argmax(gain[ties])]) if ties.size > 1 else int(ties[0])
        yield MmrPick(index=i, score=float(objective[i]), relevance=float(rel[i]),
                      redundancy=float(max_sim[i]), personal=float(pers[i]))
        available[i] = False
        if step + 1 < k:
            sims = vectors @ vectors[i]
            # The first pick sets the baseline, so a negative similarity counts as it is (no clamp at 0).
            max_sim = sims if step == 0 else np.maximum(max_sim, sims, out=max_sim)


class Mmr:
    """The diversify stage: MMR over the candidates' item vectors (row = item id)."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def select(self, relevance: np.ndarray, item_ids: np.ndarray, k: int, lam: float,
               personal: np.ndarray | None = None) -> Iterator[MmrPick]:
        return mmr(relevance, self.vectors[item_ids], k, lam, personal)

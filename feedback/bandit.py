"""How much personalisation each list gets: Thompson sampling over a few personal weights, per context.

The context is how much the profile knows (its event count, bucketed): a thin profile may deserve a
smaller weight than a rich one. Each (context, weight) arm keeps a Beta posterior over "the list gets an
interaction" (click, add-to-cart or purchase on any of its items). A served list is a trial of its arm;
an interaction on it, a success, counted once. Feedback arrives after the list, so a list without
feedback yet counts as a miss until it comes: every arm is equally pessimistic about its newest lists.

Sampling draws from the request's own generator (seeded by request id), so a decision is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
CONTEXT_EDGES = (5, 20)  # profile events: [1, 5), [5, 20), [20, ∞)


def context_of(profile_events: int) -> int:
    return int(np.searchsorted(CONTEXT_EDGES, profile_events, side="right"))


@dataclass(frozen=True)
class Choice:
    context: int
    arm: int
    weight: float


class ThompsonBandit:
    def __init__(self, weights: tuple[float, ...] = WEIGHTS, contexts: int = len(CONTEXT_EDGES) + 1) -> None:
        self.weights = weights
        self.trials = np.zeros((contexts, len(weights)))
        self.successes = np.zeros((contexts, len(weights)))

    def choose(self, profile_events: int, rng: np.random.Generator) -> Choice:
        ctx = context_of(profile_events)
        a = 1.0 + self.successes[ctx]
        b = 1.0 + np.maximum(self.trials[ctx] - self.successes[ctx], 0.0)
        arm = int(np.argmax(rng.beta(a, b)))
        return Choice(ctx, arm, self.weights[arm])

    def served(self, choice: Choice) -> None:
        self.trials[choice.context, choice.arm] += 1

    def rewarded(self, choice: Choice) -> None:
        self.successes[choice.context, choice.arm] += 1

    def means(self) -> np.ndarray:
        """Posterior mean success rate per (context, arm)."""
        return (1.0 + self.successes) / (2.0 + self.trials)

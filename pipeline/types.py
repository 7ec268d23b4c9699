"""What flows through the pipeline: the request's parameters, the items it streams, the summary, and
the catalog columns the stages read."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from retrieval.filters import FilterColumns, FilterError, Filters


class DeadlineExceeded(Exception):
    """The request's deadline passed before the pipeline finished; the remaining work was skipped."""


@dataclass(frozen=True)
class Deadline:
    """The request's deadline, a time.monotonic() instant (None: no deadline). The pipeline owns it:
    stages get what is left of it, never a clock of their own."""

    at: float | None = None

    def remaining(self) -> float | None:
        """Seconds left; raises DeadlineExceeded once it has passed."""
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("deadline passed before ranking finished")
        return left

    def cap(self, seconds: float) -> float:
        """`seconds`, or less when the deadline is nearer."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)


@dataclass(frozen=True)
class ItemTable:
    """Per-item columns the pipeline needs, row = product_id."""

    titles: np.ndarray  # object (str)
    categories: np.ndarray  # object (str)
    prices: np.ndarray  # float32
    texts: Sequence[str]  # what the reranker reads for an item
    vectors: np.ndarray  # (n, d) float32, L2-normalised, for MMR
    filter_columns: FilterColumns | None = None  # None: this table takes no filters

    def __len__(self) -> int:
        return len(self.titles)

    def filter_mask(self, filters: Filters | None) -> np.ndarray | None:
        """The allowed items (None: all); FilterError names the field of a filter that cannot apply."""
        if filters is None or filters.empty:
            return None
        if self.filter_columns is None:
            raise FilterError("category", "this catalog has no filter columns")
        return self.filter_columns.mask(filters)


@dataclass(frozen=True)
class RankParams:
    query: str
    k: int
    mmr_lambda: float
    candidates: int
    filters: Filters | None = None
    request_id: str = ""
    use_reranker: bool = True
    model_version: str = ""  # the reranker version to score with ("": the server's default)


@dataclass(frozen=True, slots=True)
class RankedItem:
    rank: int
    item_id: int
    title: str
    category: str
    price: float
    score: float
    retrieval_score: float
    rerank_score: float
    redundancy_penalty: float
    explanation: tuple[tuple[str, float], ...] = ()  # (name, value) parts that add up to `score`


@dataclass
class RankSummary:
    request_id: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    candidates_retrieved: int = 0
    candidates_reranked: int = 0
    items_returned: int = 0
    model_version: str = ""
    index_version: str = ""
    degraded: bool = False
    degraded_reason: str = ""
    mmr_lambda: float = 0.0
    personalized: bool = False
    profile_version: int = 0
    explored: bool = False

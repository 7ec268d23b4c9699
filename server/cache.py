"""LRU cache of finished rankings, so a head query is ranked once, not once per request.

The key holds everything that decides a ranking (query, k, λ, candidates, filters, model and index
versions); entries also expire after `ttl_s`, so online feedback or a reloaded model shows up soon.
Degraded rankings are never cached: they would outlive the outage.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from pipeline.pipeline import RankedItem, RankParams, RankSummary


@dataclass(frozen=True)
class CachedRanking:
    items: tuple[RankedItem, ...]
    summary: RankSummary
    stored_at: float


def cache_key(params: RankParams, model_version: str, index_version: str) -> Hashable:
    return (params.query, params.k, round(params.mmr_lambda, 6), params.candidates, params.filters,
            params.use_reranker, model_version, index_version)


class RankingCache:
    def __init__(self, maxsize: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.maxsize = maxsize
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[Hashable, CachedRanking] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> CachedRanking | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.stored_at <= self.ttl_s:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry
        if entry is not None:
            del self._entries[key]
        self.misses += 1
        return None

    def put(self, key: Hashable, items: list[RankedItem], summary: RankSummary) -> None:
        if self.maxsize <= 0 or summary.degraded:
            return
        self._entries[key] = CachedRanking(tuple(items), summary, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

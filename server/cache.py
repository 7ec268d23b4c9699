"""LRU + TTL cache of finished rankings (cachetools), so a head query is ranked once, not once per request.

The key holds everything that decides a ranking (query, k, λ, candidates, filters, model and index
versions); entries also expire after `ttl_s`, so online feedback or a reloaded model shows up soon.
Degraded rankings are never cached: they would outlive the outage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from cachetools import TTLCache

from pipeline.types import RankedItem, RankParams, RankSummary


@dataclass(frozen=True)
class CachedRanking:
    items: tuple[RankedItem, ...]
    summary: RankSummary


def cache_key(params: RankParams, model_version: str, index_version: str) -> Hashable:
    return (params.query, params.k, round(params.mmr_lambda, 6), params.candidates, params.filters,
            params.use_reranker, model_version, index_version)


class RankingCache:
    def __init__(self, maxsize: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.maxsize = maxsize
        self._entries: TTLCache[Hashable, CachedRanking] | None = (
            TTLCache(maxsize, ttl_s, timer=clock) if maxsize > 0 else None
        )

    def __len__(self) -> int:
        return 0 if self._entries is None else len(self._entries)

    def get(self, key: Hashable) -> CachedRanking | None:
        return None if self._entries is None else self._entries.get(key)

    def put(self, key: Hashable, items: list[RankedItem], summary: RankSummary) -> None:
        if self._entries is not None and not summary.degraded:
            self._entries[key] = CachedRanking(tuple(items), summary)

from __future__ import annotations

from pipeline.types import RankedItem, RankParams, RankSummary
from retrieval.filters import Filters
from server.cache import RankingCache, cache_key


def _item(i: int) -> RankedItem:
    return RankedItem(rank=i, item_id=i, title=f"t{i}", category="c", price=1.0, score=1.0,
                      retrieval_score=0.5, rerank_score=0.5, redundancy_penalty=0.0)


def test_key_covers_everything_that_decides_a_ranking() -> None:
    base = RankParams(query="sofa", k=10, mmr_lambda=0.7, candidates=100, request_id="x")
    same = RankParams(query="sofa", k=10, mmr_lambda=0.7, candidates=100, request_id="y")
    assert cache_key(base, "m1", "i1") == cache_key(same, "m1", "i1")  # request_id is not part of it
    variants = [
        RankParams(query="sofas", k=10, mmr_lambda=0.7, candidates=100),
        RankParams(query="sofa", k=11, mmr_lambda=0.7, candidates=100),
        RankParams(query="sofa", k=10, mmr_lambda=0.6, candidates=100),
        RankParams(query="sofa", k=10, mmr_lambda=0.7, candidates=200),
        RankParams(query="sofa", k=10, mmr_lambda=0.7, candidates=100, filters=Filters(max_price=10.0)),
    ]
    keys = {cache_key(v, "m1", "i1") for v in variants}
    assert len(keys) == len(variants) and cache_key(base, "m1", "i1") not in keys
    assert cache_key(base, "m2", "i1") != cache_key(base, "m1", "i1")
    assert cache_key(base, "m1", "i2") != cache_key(base, "m1", "i1")


def test_lru_eviction_ttl_and_degraded_never_stored() -> None:
    now = [0.0]
    cache = RankingCache(maxsize=2, ttl_s=10.0, clock=lambda: now[0])
    ok = RankSummary(request_id="r")
    cache.put("a", [_item(1)], ok)
    cache.put("b", [_item(2)], ok)
    assert cache.get("a") is not None  # "a" is now most recent
    now[0] = 5.0
    cache.put("c", [_item(3)], ok)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    now[0] = 10.5  # "a" (stored at 0) has expired, "c" (stored at 5) has not
    assert cache.get("a") is None and cache.get("c") is not None and len(cache) == 1
    degraded = RankSummary(request_id="r", degraded=True, degraded_reason="reranker_unavailable")
    cache.put("d", [_item(4)], degraded)
    assert cache.get("d") is None


def test_size_zero_disables() -> None:
    cache = RankingCache(maxsize=0, ttl_s=10.0)
    cache.put("a", [_item(1)], RankSummary(request_id="r"))
    assert len(cache) == 0

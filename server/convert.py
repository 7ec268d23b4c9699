"""The schema boundary: `ranking.v1` protos in, pipeline types out, and back. No logic lives here."""

from __future__ import annotations

import math
import uuid

from pipeline.types import RankedItem, RankParams, RankSummary
from protos.ranking.v1 import ranking_pb2
from retrieval.filters import FilterError, Filters
from server.config import Settings


class InvalidArgument(ValueError):
    """A request field is out of range; the message starts with the field's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_request(req: ranking_pb2.RankRequest, settings: Settings) -> RankParams:
    """Turn a RankRequest into RankParams, or raise InvalidArgument naming the field."""
    query = req.query
    if not query.strip():
        raise InvalidArgument("query", "must not be empty or whitespace")
    if len(query) > settings.max_query_chars:
        raise InvalidArgument("query", f"is {len(query)} characters; the limit is {settings.max_query_chars}")

    k = req.k if req.HasField("k") else settings.default_k
    if not 1 <= k <= settings.max_k:
        raise InvalidArgument("k", f"must be in [1, {settings.max_k}], got {k}")

    lam = req.mmr_lambda if req.HasField("mmr_lambda") else settings.default_mmr_lambda
    if not (math.isfinite(lam) and 0.0 <= lam <= 1.0):
        raise InvalidArgument("mmr_lambda", f"must be in [0, 1], got {lam}")

    candidates = req.candidates if req.HasField("candidates") else max(settings.default_candidates, k)
    if not k <= candidates <= settings.max_candidates:
        limit = settings.max_candidates
        raise InvalidArgument("candidates", f"must be in [k={k}, {limit}], got {candidates}")

    filters = None
    if req.HasField("filters"):
        try:
            filters = parse_filters(req.filters)
        except FilterError as e:
            raise InvalidArgument(f"filters.{e.field}", e.message) from None
    return RankParams(query=query, k=k, mmr_lambda=float(lam), candidates=candidates, filters=filters,
                      request_id=req.request_id or uuid.uuid4().hex)


def parse_filters(f: ranking_pb2.Filters) -> Filters | None:
    """Proto filters -> Filters (which checks prices itself; the category is checked against the catalog
    where the mask is built); None when nothing is filtered."""
    filters = Filters(
        category=f.category.strip() or None,
        min_price=f.min_price if f.HasField("min_price") else None,
        max_price=f.max_price if f.HasField("max_price") else None,
        in_stock_only=f.in_stock_only,
    )
    return None if filters.empty else filters


def item_message(item: RankedItem) -> ranking_pb2.RankResponse:
    return ranking_pb2.RankResponse(item=ranking_pb2.RankedItem(
        rank=item.rank, item_id=item.item_id, title=item.title, category=item.category, price=item.price,
        score=item.score, retrieval_score=item.retrieval_score, rerank_score=item.rerank_score,
        redundancy_penalty=item.redundancy_penalty))


def summary_message(s: RankSummary, queue_ms: float, *, cache_hit: bool = False) -> ranking_pb2.RankResponse:
    t = s.timings_ms
    timings = ranking_pb2.StageTimings(
        embed_ms=t.get("embed", 0.0), retrieve_ms=t.get("retrieve", 0.0), tokenize_ms=t.get("tokenize", 0.0),
        rerank_ms=t.get("rerank", 0.0), mmr_ms=t.get("mmr", 0.0), total_ms=t.get("total", 0.0),
        queue_ms=queue_ms, send_ms=t.get("send", 0.0), fusion_ms=t.get("fusion", 0.0))
    return ranking_pb2.RankResponse(summary=ranking_pb2.Summary(
        request_id=s.request_id, timings=timings, candidates_retrieved=s.candidates_retrieved,
        candidates_reranked=s.candidates_reranked, items_returned=s.items_returned,
        model_version=s.model_version, index_version=s.index_version, degraded=s.degraded,
        degraded_reason=s.degraded_reason, mmr_lambda=s.mmr_lambda, cache_hit=cache_hit))

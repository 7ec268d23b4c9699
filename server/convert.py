"""The schema boundary: `ranking.v1` protos in, pipeline types out, and back. No logic lives here."""

from __future__ import annotations

import dataclasses
import math
import uuid

from feedback.events import Event, EventType
from pipeline.types import RankedItem, RankParams, RankSummary
from protos.ranking.v1 import ranking_pb2
from retrieval.filters import FilterError, Filters
from server.config import Settings


class InvalidArgument(ValueError):
    """A request field is out of range; the message starts with the field's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


MAX_ID_CHARS = 128
MAX_RECENT_ITEMS = 100
# A category is echoed in an unknown-category error (message and details, both trailers): past ~8 KB of
# metadata grpc replaces the status with RESOURCE_EXHAUSTED, so the bound keeps the error naming the field.
MAX_CATEGORY_CHARS = 256
# Client clocks drift and queues delay, but an event a day ahead is a unit error (µs sent as ms): the
# profile decays every older interaction to zero against it, for good, since the log keeps the event.
MAX_CLOCK_AHEAD_MS = 24 * 3600 * 1000


def with_arm(params: RankParams, req: ranking_pb2.RankRequest, overrides: dict[str, object],
             settings: Settings) -> RankParams:
    """``params`` with the experiment arm's defaults where the request left the field unset."""
    changes: dict[str, object] = {}
    if "mmr_lambda" in overrides and not req.HasField("mmr_lambda"):
        changes["mmr_lambda"] = float(overrides["mmr_lambda"])  # type: ignore[arg-type]
    if "candidates" in overrides and not req.HasField("candidates"):
        changes["candidates"] = min(max(int(overrides["candidates"]), params.k),  # type: ignore[call-overload]
                                    settings.max_candidates)
    if "model_version" in overrides:
        changes["model_version"] = str(overrides["model_version"])
    return dataclasses.replace(params, **changes) if changes else params


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

    if len(req.request_id) > MAX_ID_CHARS:  # feedback must be able to name it (FeedbackEvent.request_id)
        raise InvalidArgument("request_id", f"is longer than {MAX_ID_CHARS} characters")
    filters = None
    if req.HasField("filters"):
        try:
            filters = parse_filters(req.filters)
        except FilterError as e:
            raise InvalidArgument(f"filters.{e.field}", e.message) from None
    return RankParams(query=query, k=k, mmr_lambda=float(lam), candidates=candidates, filters=filters,
                      request_id=req.request_id or uuid.uuid4().hex)


def parse_user(req: ranking_pb2.RankRequest, n_items: int) -> tuple[str, tuple[int, ...]]:
    """(user_id, recent_item_ids) of the request's UserContext; an empty one gives ("", ())."""
    user = req.user
    if len(user.user_id) > MAX_ID_CHARS:
        raise InvalidArgument("user.user_id", f"is longer than {MAX_ID_CHARS} characters")
    recent = tuple(user.recent_item_ids)
    if len(recent) > MAX_RECENT_ITEMS:
        raise InvalidArgument("user.recent_item_ids",
                              f"has {len(recent)} items; the limit is {MAX_RECENT_ITEMS}")
    bad = next((i for i in recent if not 0 <= i < n_items), None)
    if bad is not None:
        raise InvalidArgument("user.recent_item_ids", f"unknown item {bad}")
    return user.user_id.strip(), recent


def parse_event(e: ranking_pb2.FeedbackEvent, n_items: int, now_ms: int) -> Event:
    """A FeedbackEvent as an Event, or InvalidArgument naming the field."""
    if not e.event_id.strip():
        raise InvalidArgument("event_id", "is required (the idempotency key)")
    for name in ("event_id", "request_id", "user_id"):
        if len(getattr(e, name)) > MAX_ID_CHARS:
            raise InvalidArgument(name, f"is longer than {MAX_ID_CHARS} characters")
    if e.type not in EventType._value2member_map_:
        what = "must be set" if e.type == 0 else f"unknown event type {e.type}"
        raise InvalidArgument("type", what)
    if not 0 <= e.item_id < n_items:
        raise InvalidArgument("item_id", f"unknown item {e.item_id}")
    if e.timestamp_ms < 0:
        raise InvalidArgument("timestamp_ms", f"must not be negative, got {e.timestamp_ms}")
    if e.timestamp_ms > now_ms + MAX_CLOCK_AHEAD_MS:
        raise InvalidArgument("timestamp_ms", f"{e.timestamp_ms} is more than a day ahead of the server's "
                              f"clock ({now_ms}); milliseconds since the epoch are expected")
    return Event(event_id=e.event_id, request_id=e.request_id, user_id=e.user_id.strip(), item_id=e.item_id,
                 type=EventType(e.type), position=e.position, timestamp_ms=e.timestamp_ms or now_ms)


def parse_filters(f: ranking_pb2.Filters) -> Filters | None:
    """Proto filters -> Filters (which checks prices itself; the category is checked against the catalog
    where the mask is built); None when nothing is filtered."""
    if len(f.category) > MAX_CATEGORY_CHARS:
        raise FilterError("category", f"is {len(f.category)} characters; the limit is {MAX_CATEGORY_CHARS}")
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
        redundancy_penalty=item.redundancy_penalty,
        explanation=[ranking_pb2.ScoreComponent(name=n, value=v) for n, v in item.explanation]))


def summary_message(s: RankSummary, queue_ms: float, *, cache_hit: bool = False, variant: str = ""
                    ) -> ranking_pb2.RankResponse:
    t = s.timings_ms
    timings = ranking_pb2.StageTimings(
        embed_ms=t.get("embed", 0.0), retrieve_ms=t.get("retrieve", 0.0), tokenize_ms=t.get("tokenize", 0.0),
        rerank_ms=t.get("rerank", 0.0), mmr_ms=t.get("mmr", 0.0), total_ms=t.get("total", 0.0),
        queue_ms=queue_ms, send_ms=t.get("send", 0.0), fusion_ms=t.get("fusion", 0.0))
    return ranking_pb2.RankResponse(summary=ranking_pb2.Summary(
        request_id=s.request_id, timings=timings, candidates_retrieved=s.candidates_retrieved,
        candidates_reranked=s.candidates_reranked, items_returned=s.items_returned,
        model_version=s.model_version, index_version=s.index_version, degraded=s.degraded,
        degraded_reason=s.degraded_reason, mmr_lambda=s.mmr_lambda, cache_hit=cache_hit,
        personalized=s.personalized, profile_version=s.profile_version, explored=s.explored,
        variant=variant))

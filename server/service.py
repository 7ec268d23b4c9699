"""The `ranking.v1.Ranker` gRPC service: request validation, admission, deadlines, streaming."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable

import grpc

from pipeline.pipeline import DeadlineExceeded, RankedItem, RankingPipeline, RankParams, RankSummary
from protos.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from retrieval.filters import FilterError, Filters
from server.admission import Admission, Overloaded
from server.cache import RankingCache, cache_key
from server.config import Settings
from server.metrics import Metrics

log = logging.getLogger(__name__)
SERVER_VERSION = "0.1.0"


class InvalidArgument(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_request(
    req: ranking_pb2.RankRequest, settings: Settings, validate_filters: Callable[[Filters], None]
) -> RankParams:
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
            if filters is not None:
                validate_filters(filters)
        except FilterError as e:
            raise InvalidArgument(f"filters.{e.field}", e.message) from None
    return RankParams(query=query, k=k, mmr_lambda=float(lam), candidates=candidates, filters=filters,
                      request_id=req.request_id or uuid.uuid4().hex)


def parse_filters(f: ranking_pb2.Filters) -> Filters | None:
    """Proto filters -> Filters (which validates prices itself); None when nothing is filtered."""
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


class RankerService(ranking_pb2_grpc.RankerServicer):
    def __init__(
        self,
        pipeline: RankingPipeline,
        settings: Settings,
        *,
        validate_filters: Callable[[Filters], None],
        categories: list[str],
        index_factory: str = "",
        metrics: Metrics | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.validate_filters = validate_filters
        self.categories = categories
        self.index_factory = index_factory
        self.metrics = metrics or Metrics()
        self.admission = Admission(settings.max_inflight, settings.max_queued)
        self.cache = RankingCache(settings.ranking_cache_size, settings.ranking_cache_ttl_s)

    async def Rank(
        self, request: ranking_pb2.RankRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ranking_pb2.RankResponse]:
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            try:
                params = parse_request(request, self.settings, self.validate_filters)
            except InvalidArgument as e:
                code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, str(e))
            key = cache_key(params, self.pipeline.model_version, self.pipeline.index_version)
            cached = None if request.bypass_cache or not self.cache.maxsize else self.cache.get(key)
            if cached is not None:
                # A hit needs no slot: it costs microseconds, so it never waits behind model work.
                self.metrics.cache.labels("hit").inc()
                for item in cached.items:
                    yield item_message(item)
                summary = dataclasses.replace(cached.summary, request_id=params.request_id)
                yield summary_message(summary, 0.0, cache_hit=True)
                return
            self.metrics.cache.labels("miss").inc()
            remaining = context.time_remaining()
            deadline = None if remaining is None else time.monotonic() + remaining
            self.metrics.queued.set(self.admission.waiting + 1)
            try:
                async with self.admission.slot():
                    self.metrics.inflight.set(self.admission.running)
                    queue_ms = (time.perf_counter() - t0) * 1e3
                    items: list[RankedItem] = []
                    async for event in self.pipeline.rank(params, deadline=deadline):
                        if isinstance(event, RankedItem):
                            items.append(event)
                            yield item_message(event)
                        else:
                            self._observe(event)
                            self.cache.put(key, items, event)
                            yield summary_message(event, queue_ms)
            except Overloaded as e:
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
                await context.abort(code, str(e))
            except DeadlineExceeded as e:
                code = grpc.StatusCode.DEADLINE_EXCEEDED
                await context.abort(code, str(e))
            finally:
                self.metrics.queued.set(self.admission.waiting)
                self.metrics.inflight.set(self.admission.running)
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:
            # The client went away or its deadline passed: grpc cancels us and the work stops here.
            expired = context.time_remaining() is not None and context.time_remaining() <= 0
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except Exception as e:
            if code is not grpc.StatusCode.OK:
                # Aborting with `code` failed because the RPC had already ended: the client's deadline
                # passed while we aborted with DEADLINE_EXCEEDED. Nobody is left to tell; keep the code.
                log.debug("abort with %s after the RPC ended: %r", code.name, e)
                return
            log.exception("Rank failed")
            code = grpc.StatusCode.INTERNAL
            await context.abort(code, f"internal error: {type(e).__name__}")
        finally:
            self.metrics.requests.labels(code.name).inc()
            self.metrics.latency.observe(time.perf_counter() - t0)

    def _observe(self, s: RankSummary) -> None:
        if s.degraded:
            self.metrics.degraded.labels(s.degraded_reason).inc()
        for stage, ms in s.timings_ms.items():
            self.metrics.stage.labels(stage).observe(ms / 1e3)

    async def Info(self, request: ranking_pb2.InfoRequest, context: grpc.aio.ServicerContext
                   ) -> ranking_pb2.InfoResponse:
        return ranking_pb2.InfoResponse(
            model_version=self.pipeline.model_version, index_version=self.pipeline.index_version,
            index_factory=self.index_factory, items=len(self.pipeline.items),
            default_mmr_lambda=self.settings.default_mmr_lambda, default_k=self.settings.default_k,
            default_candidates=self.settings.default_candidates, categories=self.categories,
            server_version=SERVER_VERSION)

"""The `ranking.v1.Ranker` servicer: protos in, one pipeline call, protos out.

It holds three small objects: admission (bounded in-flight and queued requests), the ranking cache, and
the metrics. Every failure leaves as a gRPC status whose message names the cause (`_status`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import grpc
from google.protobuf.message import Message

from engines.rerank import RerankerUnavailable
from feedback.events import Event
from feedback.hub import FeedbackHub
from feedback.policy import Decision, request_seed
from feedback.store import StoreUnavailable
from pipeline.experiments import Experiments
from pipeline.personalize import Personal
from pipeline.pipeline import RankingPipeline
from pipeline.types import DeadlineExceeded, RankedItem, RankParams, RankSummary
from protos.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from retrieval.filters import FilterError
from server.admission import Admission, Overloaded
from server.cache import RankingCache, cache_key
from server.config import Settings
from server.convert import (
    InvalidArgument,
    item_message,
    parse_event,
    parse_request,
    parse_user,
    summary_message,
    with_arm,
)
from server.metrics import Metrics
from server.status import field_violation, retry_after, trailers
from server.wiring import Loaded

log = logging.getLogger(__name__)
SERVER_VERSION = "0.1.0"
# Events parsed from a Feedback stream per append: one commit in flight while the next chunk is read.
FEEDBACK_CHUNK = 512


class NotReady(Exception):
    """The pipeline is still loading (index, reranker): the client should retry."""


class FeedbackOff(Exception):
    """The server runs without a feedback log."""


class RankerService(ranking_pb2_grpc.RankerServicer):
    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.admission = Admission(settings.max_inflight, settings.max_queued, settings.max_queue_wait_s)
        self.cache = RankingCache(settings.ranking_cache_size, settings.ranking_cache_ttl_s)
        self.loaded: Loaded | None = None  # set once the pipeline is loaded; UNAVAILABLE until then
        limit = settings.max_candidates
        self.experiments = (Experiments.load(settings.experiments_file, max_candidates=limit)
                            if settings.experiments_file else None)

    @property
    def pipeline(self) -> RankingPipeline:
        if self.loaded is None:
            raise NotReady("starting: index or reranker not ready")
        return self.loaded.pipeline

    async def Rank(
        self, request: ranking_pb2.RankRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ranking_pb2.RankResponse]:
        async with self._status(context) as labels:
            params = parse_request(request, self.settings)
            user_id, recent = parse_user(request, len(self.pipeline.items))
            arm = self.experiments.assign(user_id, params.request_id) if self.experiments else None
            if arm is not None:
                labels["variant"] = arm.variant
                params = with_arm(params, request, arm.overrides, self.settings)
            weight = arm.overrides.get("personal_weight") if arm is not None else None
            personal, decision = await self._personal(user_id, recent, params.request_id,
                                                      weight)  # type: ignore[arg-type]
            async for message in self._ranked(params, request.bypass_cache, context, personal,
                                              labels.get("variant", ""), decision):
                yield message

    def arm_versions(self) -> set[str]:
        """The model versions the experiments' arms name."""
        return {a.model_version for e in (self.experiments.experiments if self.experiments else ())
                for a in e.arms if a.model_version is not None}

    def check_experiments(self, served: list[str]) -> None:
        """Arms may name only model versions that are served (loaded on Triton at start)."""
        for e in self.experiments.experiments if self.experiments else ():
            for a in e.arms:
                if a.model_version is not None and a.model_version not in served:
                    raise ValueError(f"experiment {e.name!r}, arm {a.name!r}: model_version "
                                     f"{a.model_version!r} is not served (serving {', '.join(served)})")

    async def Feedback(self, request_iterator: AsyncIterator[ranking_pb2.FeedbackEvent],
                       context: grpc.aio.ServicerContext) -> ranking_pb2.FeedbackAck:
        """Commit the stream's events in chunks (one commit in flight while the next chunk is read) and
        acknowledge once all are durable. A bad event: commit what came before it, then INVALID_ARGUMENT."""
        accepted = duplicates = 0
        pending: asyncio.Task | None = None

        async def settle() -> None:
            nonlocal accepted, duplicates, pending
            if pending is not None:
                result, pending = await pending, None
                accepted, duplicates = accepted + result.accepted, duplicates + result.duplicates

        async with self._status(context, rpc="Feedback"):
            hub = self._feedback()
            n_items = len(self.pipeline.items)
            chunk: list[Event] = []
            index = 0
            try:
                async for message in request_iterator:
                    chunk.append(parse_event(message, n_items, int(time.time() * 1e3)))
                    index += 1
                    if len(chunk) >= FEEDBACK_CHUNK:
                        await settle()
                        pending, chunk = asyncio.ensure_future(hub.ingest(chunk)), []
            except InvalidArgument as e:
                await settle()
                result = await hub.ingest(chunk)
                raise InvalidArgument(e.field, f"{e.detail} (event {index + 1} of the stream; the {index} "
                                      f"before it are committed: {accepted + result.accepted} new, "
                                      f"{duplicates + result.duplicates} duplicates)") from None
            await settle()
            result = await hub.ingest(chunk)
            return ranking_pb2.FeedbackAck(accepted=accepted + result.accepted,
                                           duplicates=duplicates + result.duplicates)

    async def Info(self, request: ranking_pb2.InfoRequest, context: grpc.aio.ServicerContext
                   ) -> ranking_pb2.InfoResponse:
        async with self._status(context, rpc="Info"):
            return await self._info()
        return ranking_pb2.InfoResponse()  # the call had already ended (deadline): nobody reads this

    async def _info(self) -> ranking_pb2.InfoResponse:
        pipeline, loaded, s = self.pipeline, self.loaded, self.settings  # NotReady while starting
        assert loaded is not None
        default = pipeline.model_version
        try:
            versions = await pipeline.reranker.versions() if pipeline.reranker else {}
        except RerankerUnavailable:
            versions = {default: "UNKNOWN"}
        shas = loaded.version_shas
        return ranking_pb2.InfoResponse(
            model_versions=[ranking_pb2.ModelVersion(version=v, state=state, is_default=v == default,
                                                     sha256=shas.get(v, ""))
                            for v, state in (versions or {default: "READY"}).items()],
            model_version=loaded.pipeline.model_version, index_version=loaded.pipeline.index_version,
            index_factory=loaded.index_factory, items=len(loaded.pipeline.items),
            default_mmr_lambda=s.default_mmr_lambda, default_k=s.default_k,
            default_candidates=s.default_candidates, categories=loaded.categories,
            server_version=SERVER_VERSION, personalization=self._personalization())

    def _personalization(self) -> str:
        if self.loaded is None or self.loaded.feedback is None or self.settings.personal_weight <= 0:
            return "off"
        return "profile_bandit" if self.loaded.feedback.policy.bandit is not None else "profile"

    def _feedback(self) -> FeedbackHub:
        if self.loaded is None:
            raise NotReady("starting: feedback log not ready")
        if self.loaded.feedback is None:
            raise FeedbackOff("feedback is turned off on this server (Settings.feedback)")
        return self.loaded.feedback

    async def _personal(self, user_id: str, recent: tuple[int, ...], request_id: str,
                        arm_weight: float | None = None) -> tuple[Personal | None, Decision | None]:
        """The user's profile (plus the request's recent items) and the policy's draw for this list
        (counted only once the list is ranked: `FeedbackHub.served`), or (None, None): the unpersonalised
        ranking (no user, no history, feedback off, weight 0, or a profile the log cannot be read for
        just now). An experiment arm's personal weight replaces the policy's for its lists."""
        hub = self.loaded.feedback if self.loaded is not None else None
        weight = self.settings.personal_weight if arm_weight is None else arm_weight
        if hub is None or not (user_id or recent) or weight <= 0:
            return None, None
        try:
            profile = await hub.profile_for(user_id, recent, int(time.time() * 1e3))
        except StoreUnavailable as exc:  # the ranking still serves; only this list goes unpersonalised
            log.warning("user %r's profile could not be read: %s", user_id, exc)
            self.metrics.degraded.labels("profile_unavailable").inc()
            return None, None
        if profile is None:
            return None, None
        if arm_weight is not None:
            return Personal(profile, arm_weight), None
        d = hub.draw(request_id, user_id, profile)
        return Personal(profile, d.weight, request_seed(request_id, "shuffle") if d.explore else None), d

    async def _ranked(self, params: RankParams, bypass_cache: bool, context: grpc.aio.ServicerContext,
                      personal: Personal | None = None, variant: str = "", decision: Decision | None = None
                      ) -> AsyncIterator[ranking_pb2.RankResponse]:
        """The ranking as messages: from the cache, or through admission and the pipeline. The policy's
        ``decision`` counts as a trial only when its list was ranked."""
        t0 = time.perf_counter()
        pipeline = self.pipeline
        key = cache_key(params, params.model_version or pipeline.model_version, pipeline.index_version)
        # A personalised ranking is the user's own and changes with every event: never cached or shared.
        shared = personal is None
        cached = None if bypass_cache or not shared else self.cache.get(key)
        self.metrics.cache.labels("hit" if cached else "miss").inc()
        if cached is not None:
            # A hit needs no slot: it costs microseconds, so it never waits behind model work.
            for item in cached.items:
                yield item_message(item)
            yield summary_message(dataclasses.replace(cached.summary, request_id=params.request_id), 0.0,
                                  cache_hit=True, variant=variant)
            return
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        self.metrics.queued.set(self.admission.waiting + 1)
        # The messages are written after the slot is given back: a client that stops reading (its
        # flow-control window full) then holds only its own few kilobytes until its deadline or the
        # connection's age limit, never a slot the other clients' requests need.
        messages: list[ranking_pb2.RankResponse] = []
        try:
            async with self.admission.slot():
                self.metrics.inflight.set(self.admission.running)
                queue_ms = (time.perf_counter() - t0) * 1e3
                items: list[RankedItem] = []
                async for event in pipeline.rank(params, deadline=deadline, personal=personal):
                    if isinstance(event, RankedItem):
                        items.append(event)
                        messages.append(item_message(event))
                    else:
                        self._observe(event, variant)
                        if shared:
                            self.cache.put(key, items, event)
                        messages.append(summary_message(event, queue_ms, variant=variant))
                if decision is not None:  # drawn by the hub: feedback is on
                    self._feedback().served(decision)
        finally:
            self.metrics.queued.set(self.admission.waiting)
            self.metrics.inflight.set(self.admission.running)
        for message in messages:
            yield message

    @asynccontextmanager
    async def _status(self, context: grpc.aio.ServicerContext, rpc: str = "Rank"
                      ) -> AsyncIterator[dict[str, str]]:
        """Map what went wrong to a gRPC status naming the cause; count and time every RPC (per
        experiment arm too, once the body has put its ``variant`` in the yielded labels)."""
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        labels: dict[str, str] = {}
        try:
            yield labels
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away or its deadline passed: grpc cancels us and the work stops here. A
            # Rank stream cancelled while grpc sends its messages (a client that stopped reading) is
            # cancelled outside the generator, which is then closed: GeneratorExit, no OK either.
            expired = context.time_remaining() is not None and context.time_remaining() <= 0
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except Exception as e:
            code, message = _status_of(e)
            await _abort(context, code, message, _details(e, self.settings))
        finally:
            if rpc == "Rank":
                seconds = time.perf_counter() - t0
                self.metrics.requests.labels(code.name).inc()
                self.metrics.latency.observe(seconds)
                if labels.get("variant"):
                    self.metrics.variant_requests.labels(labels["variant"], code.name).inc()
                    self.metrics.variant_latency.labels(labels["variant"]).observe(seconds)
            else:
                self.metrics.rpcs.labels(rpc, code.name).inc()

    def _observe(self, s: RankSummary, variant: str = "") -> None:
        if s.degraded:
            self.metrics.degraded.labels(s.degraded_reason).inc()
            if variant:
                self.metrics.variant_degraded.labels(variant).inc()
        for stage, ms in s.timings_ms.items():
            self.metrics.stage.labels(stage).observe(ms / 1e3)


def _status_of(e: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(e, InvalidArgument):
        return grpc.StatusCode.INVALID_ARGUMENT, str(e)
    if isinstance(e, FilterError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"filters.{e.field}: {e.message}"
    if isinstance(e, Overloaded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)
    if isinstance(e, DeadlineExceeded):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(e)
    if isinstance(e, NotReady):
        return grpc.StatusCode.UNAVAILABLE, str(e)
    if isinstance(e, StoreUnavailable):
        log.error("feedback log: %s", e)
        return grpc.StatusCode.UNAVAILABLE, f"feedback log cannot commit: {e}"
    if isinstance(e, FeedbackOff):
        return grpc.StatusCode.FAILED_PRECONDITION, str(e)
    log.exception("Rank failed", exc_info=e)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}"


def _details(e: Exception, settings: Settings) -> list[Message]:
    """google.rpc error details a client library can act on: which field was wrong, when to retry."""
    if isinstance(e, InvalidArgument):
        return [field_violation(e.field, e.detail)]
    if isinstance(e, FilterError):
        return [field_violation(f"filters.{e.field}", e.message)]
    if isinstance(e, Overloaded):
        return [retry_after(settings.overload_retry_after_s)]
    if isinstance(e, NotReady):
        return [retry_after(1.0)]
    return []


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str,
                 details: Sequence[Message] = ()) -> None:
    try:
        await context.abort(code, message, trailing_metadata=trailers(code, message, details))
    except grpc.aio.AbortError:
        raise
    except Exception as e:
        # The RPC had already ended (its deadline passed while we aborted): nobody is left to tell.
        log.debug("abort with %s after the RPC ended: %r", code.name, e)

"""The running server: gRPC with health and reflection, the Ranker service, and the Triton it owns.

Start order matters for Kubernetes probes: the gRPC port (with health NOT_SERVING) comes up first,
then the index loads and Triton starts; health flips to SERVING only when both are ready.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from rich.console import Console

from engines.rerank import RerankerUnavailable
from engines.triton.server import TritonServer
from engines.triton_rerank import TritonRerankerClient
from feedback.events import AppendResult
from feedback.retention import Retention
from pipeline.types import RankParams
from protos.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from retrieval.filters import Filters
from server.auth import AuthInterceptor, RateLimiter, Tokens
from server.config import Settings
from server.decode_guard import DecodeGuard
from server.metrics import Metrics
from server.service import RankerService
from server.wiring import Loaded, load_pipeline

log = logging.getLogger(__name__)
SERVICE_NAME = ranking_pb2.DESCRIPTOR.services_by_name["Ranker"].full_name
LIVENESS = "liveness"  # health service name for liveness probes: SERVING once the port is up
# Health service name that follows the reranker (Triton up and its model ready). Readiness does not: a
# server whose Triton is down still answers, degraded, so the pod stays in the Service.
RERANKER = "reranker"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
WARM_QUERIES = 3  # queries run through the whole pipeline before SERVING
VERSION_CHECK_S = 2.0  # how often the server checks that Triton still holds the versions it serves


class RankServer:
    """One gRPC server with health and reflection beside the Ranker service; owns Triton if it started it."""

    def __init__(self, settings: Settings, *, console: Console | None = None) -> None:
        self.settings = settings
        self.console = console or Console(stderr=True)
        self.metrics = Metrics()
        self.health = health.aio.HealthServicer()
        self.service = RankerService(settings, metrics=self.metrics)
        self.triton: TritonServer | None = None
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._watch: asyncio.Task | None = None
        self._keeper: asyncio.Task | None = None
        self._loaded: Loaded | None = None  # from the load on, serving or not: what stop() must close
        self.tokens: Tokens | None = None  # reloaded on SIGHUP by `serve`

    async def start(self) -> int:
        s = self.settings
        self._server = grpc.aio.server(interceptors=[*self._interceptors(), DecodeGuard()], options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_connection_age_ms", int(s.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(s.max_connection_age_grace_s * 1000)),
            ("grpc.max_receive_message_length", s.max_receive_message_bytes),
            ("grpc.max_send_message_length", s.max_send_message_bytes),
        ])
        ranking_pb2_grpc.add_RankerServicer_to_server(self.service, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                            self._server)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{s.host}:{s.port}"
        credentials = server_credentials(s)
        try:  # grpcio raises RuntimeError itself on a failed bind; older ones returned port 0
            self.port = (self._server.add_secure_port(address, credentials) if credentials is not None
                         else self._server.add_insecure_port(address))
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise OSError(f"cannot bind {s.host}:{s.port} (in use, or not an address of this machine)")
        await self._server.start()
        # Liveness says the process answers; it does not wait for the index or Triton (a pod whose Triton
        # is still loading is not dead). Readiness is "" and the Ranker service.
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        if s.metrics_port is not None:
            self.metrics.serve_http(s.metrics_port, s.host)

        t0 = time.perf_counter()
        triton_url = s.triton_url
        if s.reranker_engine == "triton" and triton_url is None:
            self.triton = TritonServer(s.triton_repo, host=s.triton_host, grpc_port=s.triton_grpc_port,
                                       metrics_port=None, stop_grace_s=s.triton_stop_grace_s,
                                       handle_signals=False)
            await asyncio.to_thread(self.triton.start)
            triton_url = self.triton.url
            self._watch = asyncio.create_task(self._supervise_triton())
        loaded = await asyncio.to_thread(load_pipeline, s, triton_url, on_commit=self._committed)
        self._loaded = loaded
        if s.reranker_engine == "triton":
            await self._wait_reranker_ready(triton_url)
            served = await self._settle_versions(loaded, triton_url)
        else:
            served = [loaded.pipeline.model_version]
        self.service.check_experiments(served)
        if (hub := loaded.feedback) is not None:
            self.metrics.watch_feedback(lambda: len(hub.profiles), lambda: hub.loads,
                                        lambda: hub.compacted.lists)
            if s.feedback_follow_s > 0 and s.feedback_dsn:  # a SQLite log is this server's own
                hub.follow(s.feedback_follow_s, on_learn=self._learned)
            hub.retain(Retention(s.feedback_retention_days, s.feedback_compact_every_s),
                       lambda: int(time.time() * 1e3))
        await self._warm(loaded)
        self.service.loaded = loaded
        if s.reranker_engine == "triton":
            await self.health.set(RERANKER, health_pb2.HealthCheckResponse.SERVING)
            self._keeper = asyncio.create_task(self._keep_versions(triton_url))
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("ready in %.1fs (reranker: %s)", time.perf_counter() - t0,
                 triton_url if s.reranker_engine == "triton" else f"torch on {s.torch_device}")
        return self.port

    async def _warm(self, loaded: Loaded) -> None:
        """Before SERVING: a few queries through every stage (embedding, both retrievers, filtered and
        not, the reranker, fusion, MMR), so the first client request pays no first-call costs (measured
        before: 1,082 ms of retrieval in the first query after `make run`, 2.8 ms in the next)."""
        s, t0 = self.settings, time.perf_counter()
        names = loaded.categories[:WARM_QUERIES] or ["warm up"]
        for i, name in enumerate(names):
            filters = Filters(category=name) if i else None
            params = RankParams(query=name, k=s.default_k, mmr_lambda=s.default_mmr_lambda,
                                candidates=s.default_candidates, filters=filters, request_id=f"warmup-{i}")
            async for _ in loaded.pipeline.rank(params):
                pass
        log.info("warmed up with %d queries in %.0f ms", len(names), (time.perf_counter() - t0) * 1e3)

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        s = self.settings
        if s.auth_tokens_file is None:
            if s.host not in LOOPBACK:
                log.warning("NO AUTHENTICATION: serving %s:%s to anyone who can reach it; set "
                            "--auth-tokens-file (RANKSERVE_AUTH_TOKENS_FILE)", s.host, s.port)
            return []
        self.tokens = Tokens(s.auth_tokens_file)
        limiter = RateLimiter(s.rate_limit_rps, s.rate_limit_burst) if s.rate_limit_rps > 0 else None
        log.info("bearer-token auth on: %d tokens%s", len(self.tokens),
                 f", {s.rate_limit_rps:g} calls/s per client" if limiter else "")
        return [AuthInterceptor(self.tokens, limiter, on_call=self.metrics.auth_call)]

    def _committed(self, result: AppendResult, seconds: float) -> None:
        """After each event-log commit: its metrics, and the bandit's posterior (what the commit taught)."""
        self.metrics.committed(result, seconds)
        experiments = self.service.experiments
        if experiments is not None:
            # The arm is a hash of the event's user (or request) id: the same the request was served by.
            for e in result.new:
                variant = experiments.assign(e.user_id, e.request_id).variant
                self.metrics.variant_events.labels(variant, e.type.name).inc()
        self._learned()

    def _learned(self) -> None:
        """The bandit's posterior and the CTR by arm, after a commit or a read of other replicas' rows."""
        loaded = self.service.loaded
        if loaded is None or loaded.feedback is None:
            return
        policy = loaded.feedback.policy
        self.metrics.arm_ctr(policy.ctr())
        if policy.bandit is not None:
            self.metrics.bandit(policy.bandit.means(), policy.bandit.weights)

    async def _wait_reranker_ready(self, triton_url: str) -> None:
        """An external Triton may still be loading: stay NOT_SERVING until its model is ready."""
        # A probe of its own: the request timeout (triton_timeout_s) may be far tighter than a probe needs.
        probe = TritonRerankerClient(triton_url, model=self.settings.triton_model, timeout_s=2.0)
        t0 = time.monotonic()
        try:
            while not await probe.ready():
                if time.monotonic() - t0 > self.settings.triton_ready_timeout_s:
                    raise RuntimeError(f"reranker model not ready on Triton after "
                                       f"{self.settings.triton_ready_timeout_s:.0f}s")
                await asyncio.sleep(0.5)
        finally:
            await probe.close()

    async def _settle_versions(self, loaded: Loaded, triton_url: str) -> list[str]:
        """Pin the default version (the configured one, else the newest loaded) and load every version an
        experiment arm names beside what is loaded; returns the versions served."""
        probe = TritonRerankerClient(triton_url, model=self.settings.triton_model, timeout_s=10.0)
        try:
            ready = await probe.ready_versions()
            default = self.settings.reranker_version or (ready[-1] if ready else "")
            missing = {v for v in {default, *self.service.arm_versions()} - set(ready) if v.isdigit()}
            if missing:
                log.info("loading reranker versions %s beside %s", sorted(missing), ready)
                try:
                    await probe.load_versions(set(ready) | missing)
                except RerankerUnavailable as exc:  # check_experiments names the arm and version
                    log.error("%s", exc)
                ready = await probe.ready_versions()
        finally:
            await probe.close()
        if default not in ready:
            raise RuntimeError(f"reranker version {default!r} is not loaded on Triton (loaded: {ready})")
        await asyncio.to_thread(loaded.pipeline.pin_version, default)
        await asyncio.to_thread(loaded.pipeline.prepare, ready)
        return ready

    async def _keep_versions(self, triton_url: str) -> None:
        """Every VERSION_CHECK_S: health `reranker` follows Triton, and a restarted Triton (ours, or a
        sidecar), which comes back with its newest version only, gets the default and the arms' versions
        loaded again. A version unloaded on purpose (`rankserve model unload`) is listed UNAVAILABLE by
        Triton, not absent, and is left alone."""
        probe = TritonRerankerClient(triton_url, model=self.settings.triton_model, timeout_s=5.0)
        up = True
        try:
            while True:
                await asyncio.sleep(VERSION_CHECK_S)
                loaded = self.service.loaded
                if loaded is None:
                    continue
                if (ready := await probe.ready(loaded.pipeline.model_version)) != up:
                    up = ready
                    log.warning("reranker %s", "ready again" if up else "down: serving degraded")
                    await self.health.set(RERANKER, health_pb2.HealthCheckResponse.SERVING if up
                                          else health_pb2.HealthCheckResponse.NOT_SERVING)
                try:
                    states = await probe.versions()
                    ready = {v for v, state in states.items() if state == "READY"}
                    wanted = {loaded.pipeline.model_version, *self.service.arm_versions()}
                    absent = {v for v in wanted if v.isdigit() and v not in states}
                    if ready and absent:
                        log.warning("Triton lost reranker versions %s (restarted?); loading them",
                                    sorted(absent))
                        await probe.load_versions(ready | absent)
                except RerankerUnavailable as exc:
                    log.debug("version check: %s", exc)  # down: the supervisor or the kubelet restarts it
        finally:
            await probe.close()

    async def _supervise_triton(self) -> None:
        """Restart our Triton if it dies; requests are served degraded until it is back."""
        while True:
            await asyncio.sleep(1.0)
            if self.triton is not None and not self.triton.is_running():
                log.warning("tritonserver exited; restarting it")
                try:
                    await asyncio.to_thread(self.triton.start)  # _keep_versions reloads the arms' versions
                except Exception:
                    log.exception("tritonserver restart failed; will retry")

    async def stop(self) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for task in (self._watch, self._keeper):
            if task is not None:
                task.cancel()
        if self._server is not None:
            await self._server.stop(self.settings.grace_s)
        # Also when the start failed after loading (an experiment naming a version not served, a warm-up
        # error): the log's lock, connections and threads, and the reranker's channel, are ours to close.
        if self._loaded is not None:
            if self._loaded.feedback is not None:
                self._loaded.feedback.close()  # after the streams: every commit they await has finished
            await self._loaded.pipeline.reranker.close()
        self.metrics.close()
        if self.triton is not None:
            await asyncio.to_thread(self.triton.stop)


def server_credentials(s: Settings) -> grpc.ServerCredentials | None:
    """TLS from the configured PEM files (mutual TLS with a client CA); None: plaintext."""
    if s.tls_cert is None or s.tls_key is None:
        return None
    ca = s.tls_client_ca.read_bytes() if s.tls_client_ca is not None else None
    return grpc.ssl_server_credentials([(s.tls_key.read_bytes(), s.tls_cert.read_bytes())],
                                       root_certificates=ca, require_client_auth=ca is not None)


async def serve(settings: Settings, *, console: Console | None = None) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully (Triton included)."""
    from threadpoolctl import threadpool_limits

    # The server's BLAS calls are one query against <= 1000 candidates, too small to parallelise, and
    # after each one OpenBLAS worker threads busy-wait (sched_yield) for ~0.1 s: measured, one of them
    # burnt 0.8 of a core under load, taken from Triton. One BLAS thread: 12.3 -> 15.4 req/s.
    threadpool_limits(limits=1, user_api="blas")
    console = console or Console(stderr=True)
    server = RankServer(settings, console=console)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: server.tokens.reload() if server.tokens else None)
    try:
        port = await server.start()
        console.print(f"[green]rankserve ready[/] on {settings.host}:{port} — try: "
                      f"rankserve query \"turquoise pillows\" --k 10 --target {settings.host}:{port}")
        await stop.wait()
        console.print("shutting down…")
    finally:
        await server.stop()

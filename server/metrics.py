"""Prometheus metrics of one server instance (its own registry: no process-global state)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from wsgiref.simple_server import WSGIServer

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from feedback.events import AppendResult

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._http: WSGIServer | None = None  # the /metrics endpoint, once served
        self.requests = Counter("rankserve_requests", "Rank RPCs by final gRPC status code", ["code"],
                                registry=self.registry)
        self.degraded = Counter("rankserve_degraded", "Rank RPCs served degraded, by reason", ["reason"],
                                registry=self.registry)
        self.latency = Histogram("rankserve_request_seconds", "Rank RPC latency (whole stream)",
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.stage = Histogram("rankserve_stage_seconds", "Pipeline stage latency", ["stage"],
                               buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.cache = Counter("rankserve_ranking_cache", "Ranking cache lookups", ["result"],
                             registry=self.registry)
        self.inflight = Gauge("rankserve_inflight", "Rank RPCs running the pipeline", registry=self.registry)
        # Per experiment arm ("experiment/arm;..."); requests outside any experiment are not repeated here.
        self.variant_requests = Counter("rankserve_variant_requests", "Rank RPCs by experiment arm and final "
                                        "gRPC status code", ["variant", "code"], registry=self.registry)
        self.variant_latency = Histogram("rankserve_variant_request_seconds", "Rank RPC latency by "
                                         "experiment arm", ["variant"], buckets=_LATENCY_BUCKETS,
                                         registry=self.registry)
        self.variant_degraded = Counter("rankserve_variant_degraded", "Rank RPCs served degraded, by "
                                        "experiment arm", ["variant"], registry=self.registry)
        self.variant_events = Counter("rankserve_variant_feedback_events", "Committed feedback events by "
                                      "experiment arm and type (CTR = CLICK / IMPRESSION, CVR = PURCHASE / "
                                      "CLICK)", ["variant", "type"], registry=self.registry)
        # Checked calls by outcome (ok, unauthenticated, rate_limited); a client is a hash of its token.
        self.auth = Counter("rankserve_auth_calls", "Calls by authentication outcome and client (a hash of "
                            "its token; never the token)", ["client", "outcome"], registry=self.registry)
        self.rpcs = Counter("rankserve_rpcs", "Other RPCs by method and final gRPC status code",
                            ["method", "code"], registry=self.registry)
        self.events = Counter("rankserve_feedback_events", "Feedback events committed, by type and outcome",
                              ["type", "outcome"], registry=self.registry)
        self.commit = Histogram("rankserve_feedback_commit_seconds", "Event-log transaction latency",
                                buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.arm_rate = Gauge("rankserve_bandit_interaction_rate",
                              "Posterior mean share of personalised lists with a click, cart or purchase, "
                              "per bandit arm (profile-size context, personal weight)", ["context", "weight"],
                              registry=self.registry)
        self.ctr = Gauge("rankserve_ctr", "Clicks per impression in the feedback log, by the arm the list "
                         "was served under (unpersonalised, or the personal weight)", ["arm"],
                         registry=self.registry)
        self.queued = Gauge("rankserve_queued", "Rank RPCs waiting for admission", registry=self.registry)
        self.profiles_held = Gauge("rankserve_profiles_held", "User profiles held in memory (the most "
                                   "recently used; Settings.profile_cache_users)", registry=self.registry)
        self.profile_reads = Gauge("rankserve_profile_reads", "User profiles read from the event log since "
                                   "start (a user not held, searching)", registry=self.registry)
        self.compacted_lists = Gauge("rankserve_feedback_compacted_lists", "Lists (a decision and its "
                                     "events) retention deleted from the event log since start",
                                     registry=self.registry)

    def auth_call(self, client: str, outcome: str) -> None:
        self.auth.labels(client, outcome).inc()

    def committed(self, result: AppendResult, seconds: float) -> None:
        """One event-log transaction: its latency and its new events by type."""
        self.commit.observe(seconds)
        for e in result.new:
            self.events.labels(e.type.name, "accepted").inc()
        if result.duplicates:
            self.events.labels("any", "duplicate").inc(result.duplicates)

    def bandit(self, means: np.ndarray, weights: Sequence[float]) -> None:
        """The bandit's posterior means, one gauge per (context, weight) arm."""
        for ctx, row in enumerate(means):
            for w, m in zip(weights, row, strict=True):
                self.arm_rate.labels(str(ctx), f"{w:g}").set(float(m))

    def watch_feedback(self, held: Callable[[], float], reads: Callable[[], float],
                       compacted: Callable[[], float]) -> None:
        """Read at each scrape: how many profiles are held, how many were read from the log, and how
        many lists retention deleted from it."""
        self.profiles_held.set_function(held)
        self.profile_reads.set_function(reads)
        self.compacted_lists.set_function(compacted)

    def arm_ctr(self, ctr: dict[str, float]) -> None:
        for arm, value in ctr.items():
            self.ctr.labels(arm).set(value)

    def serve_http(self, port: int, host: str = "127.0.0.1") -> None:
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        """Stop the /metrics endpoint (its port is free again), if it was started."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

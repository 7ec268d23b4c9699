"""Prometheus metrics of one server instance (its own registry: no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        self.queued = Gauge("rankserve_queued", "Rank RPCs waiting for admission", registry=self.registry)

    def serve_http(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)

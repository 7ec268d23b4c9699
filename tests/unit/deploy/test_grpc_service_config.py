"""The gRPC service config gateways use (deploy/grpc/service-config.json, docs/deploy.md): it must name
real methods and status codes, and, on real channels to two loopback servers, spread calls over both
(round_robin, where the default pick_first sends all to one) and retry UNAVAILABLE and
RESOURCE_EXHAUSTED on another server."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from protos.ranking.v1 import ranking_pb2
from server.config import Settings
from tests.unit.deploy.manifests import DEPLOY

CONFIG = json.loads((DEPLOY / "grpc" / "service-config.json").read_text())
RANKER = ranking_pb2.DESCRIPTOR.services_by_name["Ranker"]


def _seconds(duration: str) -> float:
    assert duration.endswith("s")
    return float(duration[:-1])


def test_config_names_real_methods_and_codes() -> None:
    assert CONFIG["loadBalancingConfig"] == [{"round_robin": {}}]
    codes = {c.name for c in grpc.StatusCode}
    methods = {}
    for entry in CONFIG["methodConfig"]:
        for name in entry["name"]:
            assert name["service"] == RANKER.full_name
            assert name["method"] in RANKER.methods_by_name
            methods[name["method"]] = entry
        policy = entry.get("retryPolicy")
        if policy:
            assert set(policy["retryableStatusCodes"]) <= codes
            assert 2 <= policy["maxAttempts"] <= 5
    rank = methods["Rank"]
    assert set(rank["retryPolicy"]["retryableStatusCodes"]) == {"UNAVAILABLE", "RESOURCE_EXHAUSTED"}
    # The deadline leaves room for the server's degraded answer after a reranker timeout.
    assert _seconds(rank["timeout"]) > Settings.model_fields["triton_timeout_s"].default
    assert "retryThrottling" in CONFIG


class _Backend:
    """A loopback server answering Rank with its own name; the first `fail` calls (shared by all
    backends through `budget`) are refused with `code`."""

    def __init__(self, name: str, hits: Counter[str], budget: list[int], code: grpc.StatusCode) -> None:
        self.name, self.hits, self.budget, self.code = name, hits, budget, code
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.unary_stream_rpc_method_handler(self._rank)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(RANKER.full_name, {"Rank": handler}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _rank(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self.hits[self.name] += 1
        with self.lock:
            refuse = self.budget[0] > 0
            self.budget[0] -= refuse
        if refuse:
            context.abort(self.code, "refused")
        yield self.name.encode()


def _calls(service_config: dict[str, Any] | None, *, fail: int = 0,
           code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, n: int = 30) -> tuple[Counter[str], int]:
    hits: Counter[str] = Counter()
    budget = [fail]
    backends = [_Backend(name, hits, budget, code) for name in ("a", "b")]
    target = "ipv4:" + ",".join(f"127.0.0.1:{b.port}" for b in backends)
    options = [("grpc.service_config", json.dumps(service_config))] if service_config else []
    options.append(("grpc.enable_retries", 1))
    errors = 0
    try:
        with grpc.insecure_channel(target, options=options) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            rank = channel.unary_stream(f"/{RANKER.full_name}/Rank")
            for _ in range(n):
                try:
                    list(rank(b"", timeout=5))
                except grpc.RpcError:
                    errors += 1
    finally:
        for b in backends:
            b.server.stop(None)
    return hits, errors


def test_round_robin_spreads_calls_over_every_backend() -> None:
    hits, errors = _calls(CONFIG)
    assert errors == 0
    assert min(hits["a"], hits["b"]) >= 10, hits
    # Without it (pick_first) one backend takes everything: the config is what balances.
    hits, _ = _calls(None)
    assert sorted(hits.values()) == [30], hits


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_refused_calls_are_retried(code: grpc.StatusCode) -> None:
    attempts = next(m for m in CONFIG["methodConfig"] if {"service": RANKER.full_name, "method": "Rank"}
                    in m["name"])["retryPolicy"]["maxAttempts"]
    # Refusals fewer than the attempts: every call ends well.
    _, errors = _calls(CONFIG, fail=attempts - 1, code=code, n=10)
    assert errors == 0
    # Retries are bounded: as many refusals as attempts fail the first call.
    _, errors = _calls(CONFIG, fail=attempts, code=code, n=10)
    assert errors == 1
    no_retry = {k: v for k, v in CONFIG.items() if k != "methodConfig"}
    _, errors = _calls(no_retry, fail=attempts - 1, code=code, n=10)
    assert errors == attempts - 1

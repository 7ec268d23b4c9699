"""Clients that open Rank streams and never read them (HTTP/2 window 0, `benchmarks.stalled_client`):
they hold no admission slot, so everyone else is still served, and each stalled stream ends at its own
deadline. (Their effect on others' p99 and on the server's memory is measured by `rankserve bench`.)"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.stalled_client import StalledStreams
from protos.ranking.v1 import ranking_pb2
from tests.conftest import Artifacts
from tests.e2e.test_server import rank, start_server, stop_server

ENGINE = {"RANKSERVE_RERANKER_ENGINE": "torch", "RANKSERVE_TORCH_DEVICE": "cpu",
          "RANKSERVE_TORCH_PRECISION": "fp32"}
STALLED = 6
DEADLINE_S = 15.0  # room for a loaded machine to rank every stalled request well before it


def test_streams_never_read_hold_no_slot_and_end_at_their_deadline(artifacts: Artifacts,
                                                                    tmp_path: Path) -> None:
    # One slot: a stalled stream that kept it would hold everyone else in the queue until its deadline.
    # The queue holds all the stalled requests, with no wait budget to shed them by, so each is ranked.
    running = start_server(artifacts, tmp_path, RANKSERVE_MAX_INFLIGHT="1", RANKSERVE_MAX_QUEUED="16",
                           RANKSERVE_MAX_QUEUE_WAIT_S="60", **ENGINE)
    stalled = StalledStreams("127.0.0.1", running.port)
    try:
        # Distinct queries: a cache hit would need no slot and prove nothing.
        opened = time.monotonic()
        ids = [stalled.open(ranking_pb2.RankRequest(query=f"velvet sofa {i}", k=50).SerializeToString(),
                            DEADLINE_S) for i in range(STALLED)]
        # Every stalled request gets ranked and gives its slot back, long before its deadline, while its
        # answer sits behind the shut window (with the slot held until then, inflight would stay 1).
        # Until the server has seen them all (both gauges read 0 before the first one arrives, too).
        def settled() -> bool:
            seen = running.metric("rankserve_ranking_cache_total", 'result="miss"')
            return seen == STALLED and not (running.metric("rankserve_queued")
                                            or running.metric("rankserve_inflight"))
        until = time.monotonic() + DEADLINE_S - 4.0
        while time.monotonic() < until and not settled():
            stalled.pump(0.2)
        assert running.metric("rankserve_ranking_cache_total", 'result="miss"') == STALLED
        assert running.metric("rankserve_queued") == running.metric("rankserve_inflight") == 0
        assert not stalled.ended and stalled.data_bytes == 0
        for i in range(5):
            _, items, summary = rank(running.stub, f"oak dining table {i}", timeout=10)
            assert summary.items_returned == 10 and len(items) == 10
        assert running.metric("rankserve_requests_total", 'code="RESOURCE_EXHAUSTED"') == 0
        assert running.metric("rankserve_requests_total", 'code="OK"') >= 5
        stalled.pump(max(0.0, DEADLINE_S + 1.5 - (time.monotonic() - opened)))
        assert set(stalled.ended) == set(ids), f"{len(stalled.ended)} of {STALLED} ended"
        assert all(end.seconds < DEADLINE_S + 1.5 for end in stalled.ended.values()), stalled.ended
        assert running.metric("rankserve_inflight") == 0
        # Counted by how they ended (a stream closed by grpc while it waits to send is no OK).
        until = time.monotonic() + 5.0
        while time.monotonic() < until and running.metric("rankserve_requests_total",
                                                          'code="DEADLINE_EXCEEDED"') < STALLED:
            time.sleep(0.1)
        assert running.metric("rankserve_requests_total", 'code="DEADLINE_EXCEEDED"') == STALLED
        assert running.metric("rankserve_requests_total", 'code="OK"') == 5
        _, items, _ = rank(running.stub, "velvet sofa", timeout=10)
        assert len(items) == 10
    finally:
        stalled.close()
        assert stop_server(running) == 0, running.log_tail()

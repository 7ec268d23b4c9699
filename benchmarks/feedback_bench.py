"""Feedback ingest throughput: events/s the real server commits while ranking traffic runs, against an
empty RPC loop (the same client streams, into an in-process server that only counts them) measured in
the same run. The ratio says how much of gRPC's own streaming rate the durable log keeps."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence

import grpc

from protos.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from server.client import rank_request

STREAMS = 4  # concurrent Feedback streams: a gateway fleet's shape, and what group commit batches
EVENTS_PER_STREAM = 2000
USERS = 97  # the events' users, whom the ranking traffic also searches as


class _Discard(ranking_pb2_grpc.RankerServicer):
    """The empty loop: reads every event and acknowledges; no parsing, no log."""

    async def Feedback(self, request_iterator: AsyncIterator[ranking_pb2.FeedbackEvent],
                       context: grpc.aio.ServicerContext) -> ranking_pb2.FeedbackAck:
        n = 0
        async for _ in request_iterator:
            n += 1
        return ranking_pb2.FeedbackAck(accepted=n)


def _events(prefix: str, n: int, items: int, users: str = "bench") -> list[ranking_pb2.FeedbackEvent]:
    kinds = (*[ranking_pb2.EVENT_TYPE_IMPRESSION] * 3, ranking_pb2.EVENT_TYPE_CLICK)
    return [ranking_pb2.FeedbackEvent(event_id=f"{prefix}-{i}", request_id=f"{prefix}-r{i // 10}",
                                      user_id=f"{users}-{i % USERS}", item_id=(i * 7919) % items,
                                      type=kinds[i % 4], position=i % 10 + 1) for i in range(n)]


async def _ingest(target: str, batches: Sequence[list[ranking_pb2.FeedbackEvent]]) -> tuple[float, int]:
    """Stream every batch concurrently (one stream each); (seconds, events acknowledged)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ranking_pb2_grpc.RankerStub(channel)
        t = time.perf_counter()
        acks = await asyncio.gather(*(stub.Feedback(iter(b), timeout=300) for b in batches))
        seconds = time.perf_counter() - t
    return seconds, sum(a.accepted + a.duplicates for a in acks)


async def _rank_load(target: str, queries: Sequence[str], stop: asyncio.Event, users: str,
                     concurrency: int = 2) -> tuple[int, int, int]:
    """Rank requests from the users the events are about, so the profiles, the bandit and the taste
    model fits (refitted after each change to a user's impressions) are on the measured path;
    (requests, of them with the user's profile, of them personalised). A list with a profile may still be
    unpersonalised: the bandit's weight-0 arm."""
    done = profiled = personalised = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ranking_pb2_grpc.RankerStub(channel)
        cycle = itertools.cycle(queries)

        async def worker() -> None:
            nonlocal done, profiled, personalised
            while not stop.is_set():
                user = ranking_pb2.UserContext(user_id=f"{users}-{done % USERS}")
                async for m in stub.Rank(rank_request(next(cycle), k=10, user=user), timeout=30):
                    if m.HasField("summary"):
                        profiled += m.summary.profile_version > 0
                        personalised += m.summary.personalized
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, profiled, personalised


async def _profile_version(target: str, query: str, user_id: str) -> int:
    """The version (events applied) of the profile ``user_id``'s next list is ranked with: 0 when the
    server holds no history for them. Deterministic, unlike whether the bandit personalises that list."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ranking_pb2_grpc.RankerStub(channel)
        req = rank_request(query, k=10, user=ranking_pb2.UserContext(user_id=user_id))
        summaries = [m.summary async for m in stub.Rank(req, timeout=30) if m.HasField("summary")]
    return summaries[-1].profile_version


async def feedback_bench(target: str, queries: Sequence[str], items: int, *, streams: int = STREAMS,
                         events_per_stream: int = EVENTS_PER_STREAM) -> dict:
    """Empty-loop events/s, then the server's events/s under concurrent Rank load (c=2) from the same
    users, whose profiles grow as their events commit."""
    server = grpc.aio.server()
    ranking_pb2_grpc.add_RankerServicer_to_server(_Discard(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        batches = [_events(f"empty-{s}", events_per_stream, items) for s in range(streams)]
        empty_s, empty_n = await _ingest(f"127.0.0.1:{port}", batches)
    finally:
        await server.stop(None)
    stop = asyncio.Event()
    run = f"bench-{time.time_ns()}"  # this run's users: none has history in the log before it starts
    load = asyncio.create_task(_rank_load(target, queries, stop, run))
    await asyncio.sleep(1.0)  # ranking traffic is running before the events start
    batches = [_events(f"{run}-{s}", events_per_stream, items, run) for s in range(streams)]
    ingest_s, ingest_n = await _ingest(target, batches)
    stop.set()
    ranked, profiled, personalised = await load
    # Every event is applied to its user's profile before its ack: user 0's profile counts all of theirs.
    user0_events = sum(e.user_id == f"{run}-0" for b in batches for e in b)
    version_after = await _profile_version(target, queries[0], f"{run}-0")
    empty_rate, rate = empty_n / empty_s, ingest_n / ingest_s
    return {"events": ingest_n, "streams": streams, "events_per_s": rate,
            "empty_loop_events_per_s": empty_rate, "vs_empty_loop": rate / empty_rate,
            "rank_requests_during": ranked, "profiled_rank_requests_during": profiled,
            "personalised_rank_requests_during": personalised,
            "user0_events": user0_events, "user0_profile_version_after_ingest": version_after}

"""A small async client for the Ranker service (used by `rankserve query`, the tests and the bench)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from rich.console import Console

from protos.ranking.v1 import ranking_pb2, ranking_pb2_grpc


def rank_request(
    query: str,
    *,
    k: int | None = None,
    lam: float | None = None,
    candidates: int | None = None,
    category: str | None = None,
    min_price: float | None = None,
    max_price: float | None = None,
    in_stock: bool = False,
    request_id: str = "",
    bypass_cache: bool = False,
    user: ranking_pb2.UserContext | None = None,
) -> ranking_pb2.RankRequest:
    req = ranking_pb2.RankRequest(query=query, request_id=request_id, bypass_cache=bypass_cache, user=user)
    if k is not None:
        req.k = k
    if lam is not None:
        req.mmr_lambda = lam
    if candidates is not None:
        req.candidates = candidates
    if category or min_price is not None or max_price is not None or in_stock:
        req.filters.category = category or ""
        if min_price is not None:
            req.filters.min_price = min_price
        if max_price is not None:
            req.filters.max_price = max_price
        req.filters.in_stock_only = in_stock
    return req


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


@dataclass(frozen=True)
class Connection:
    """Where a client connects and how: plaintext, TLS (``tls_ca``), mutual TLS (plus a client
    certificate and key), with or without a bearer token."""

    target: str
    token: str | None = field(default=None, repr=False)  # never in a repr, a log line or a traceback
    tls_ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def _credentials(self) -> grpc.ChannelCredentials | None:
        if self.tls_ca is None and self.client_cert is None:
            return None
        return grpc.ssl_channel_credentials(_read(self.tls_ca), _read(self.client_key),
                                            _read(self.client_cert))

    def channel(self) -> grpc.aio.Channel:
        creds = self._credentials()
        return grpc.aio.insecure_channel(self.target) if creds is None else \
            grpc.aio.secure_channel(self.target, creds)

    def sync_channel(self) -> grpc.Channel:
        creds = self._credentials()
        return grpc.insecure_channel(self.target) if creds is None else \
            grpc.secure_channel(self.target, creds)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


async def print_stream(conn: Connection, query: str, *, timeout: float = 10.0, **kwargs) -> int:
    """Print each item as it arrives (rank, id, title, scores, arrival ms); returns a shell exit code."""
    out = Console()
    async with conn.channel() as channel:
        stub = ranking_pb2_grpc.RankerStub(channel)
        t0 = time.perf_counter()
        try:
            async for msg in stub.Rank(rank_request(query, **kwargs), timeout=timeout,
                                       metadata=conn.metadata()):
                ms = (time.perf_counter() - t0) * 1e3
                if msg.HasField("item"):
                    it = msg.item
                    out.print(f"{it.rank:>3}  {it.item_id:>6}  {it.title[:60]:<60}  {it.category[:24]:<24}"
                              f"  ${it.price:>8.2f}  score={it.score:.3f} rerank={it.rerank_score:.3f} "
                              f"retr={it.retrieval_score:.3f} red={it.redundancy_penalty:.2f}  +{ms:.1f}ms")
                else:
                    s, t = msg.summary, msg.summary.timings
                    state = f"[red]DEGRADED ({s.degraded_reason})[/]" if s.degraded else "[green]ok[/]"
                    personal = f", personalised (profile v{s.profile_version})" if s.personalized else ""
                    out.print(f"-- {s.items_returned} items, {s.candidates_retrieved} retrieved, "
                              f"{s.candidates_reranked} reranked, λ={s.mmr_lambda:.2f}, {state}{personal}; "
                              f"embed {t.embed_ms:.1f} / ann {t.retrieve_ms:.1f} / tok {t.tokenize_ms:.1f} / "
                              f"rerank {t.rerank_ms:.1f} / fusion {t.fusion_ms:.1f} / mmr {t.mmr_ms:.2f} / "
                              f"total {t.total_ms:.1f} ms; "
                              f"model {s.model_version}, index {s.index_version}")
        except grpc.aio.AioRpcError as e:
            Console(stderr=True).print(f"[red]{e.code().name}[/]: {e.details()}")
            return 1
    return 0

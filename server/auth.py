"""Who may call: bearer tokens from a file, and a token bucket per authenticated client.

The tokens file holds one token per line (``#`` starts a comment); `serve` reloads it on SIGHUP, so a
token is added or revoked without a restart. A call presents ``authorization: Bearer <token>``; it is
compared in constant time against every token (`hmac.compare_digest`, no early exit on the first
match), so timing does not tell how much of a guess was right. A client is known by a hash of its token
(`client_id`), never the token itself: logs and metrics see only that.

Health's Check stays open (kubelet probes carry no token); Watch, reflection and the Ranker need a token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from server.status import retry_after, trailers

log = logging.getLogger(__name__)
# Kubelet and grpc_health_probe need Check only; Watch (a stream held open) needs a token like the rest.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check"})


def read_tokens(path: Path) -> list[bytes]:
    """The tokens of a tokens file; ValueError (naming the file, never a token) when it has none."""
    tokens = []
    for line in Path(path).read_text().splitlines():
        token = line.split("#", 1)[0].strip()
        if token:
            tokens.append(token.encode())
    if not tokens:
        raise ValueError(f"{path}: no tokens (one per line, '#' comments)")
    return tokens


def client_id(token: bytes) -> str:
    return "client-" + hashlib.sha256(token).hexdigest()[:12]


class Tokens:
    """The accepted tokens, reloadable (SIGHUP) from their file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._tokens = read_tokens(self.path)

    def __len__(self) -> int:
        return len(self._tokens)

    def reload(self) -> None:
        """Re-read the file; a file that cannot be read or holds no tokens keeps the current set."""
        try:
            self._tokens = read_tokens(self.path)
        except (OSError, ValueError) as exc:
            log.error("tokens file not reloaded, keeping %d tokens: %s", len(self._tokens), exc)
            return
        log.info("tokens file reloaded: %d tokens", len(self._tokens))

    def match(self, presented: bytes) -> str | None:
        """The client id of ``presented`` if it is a token, else None; constant time in the match."""
        found = None
        for token in self._tokens:
            if hmac.compare_digest(token, presented):
                found = token
        return client_id(found) if found is not None else None


@dataclass
class Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per client: ``rate`` calls per second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, Bucket] = {}

    def take(self, client: str) -> float:
        """0 when ``client`` may call now (one token spent), else the seconds until it may."""
        now = self._clock()
        b = self._buckets.get(client)
        if b is None:
            b = self._buckets[client] = Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate


def _bearer(metadata: tuple | None) -> bytes | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value if isinstance(value, str) else value.decode(errors="replace")
            scheme, _, token = text.partition(" ")
            return token.strip().encode() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _deny(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str,
          metadata: tuple = ()) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind that ends the call with ``code`` before any work."""
    async def abort(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message, trailing_metadata=metadata)

    kind = ("unary_unary" if handler.unary_unary else "unary_stream" if handler.unary_stream
            else "stream_unary" if handler.stream_unary else "stream_stream")
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(abort, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED without a valid bearer token (health excepted); RESOURCE_EXHAUSTED with
    RetryInfo past the client's rate; ``on_call(client, outcome)`` counts both."""

    def __init__(self, tokens: Tokens, limiter: RateLimiter | None = None,
                 on_call: Callable[[str, str], None] | None = None) -> None:
        self.tokens = tokens
        self.limiter = limiter
        self.on_call = on_call or (lambda client, outcome: None)

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or method in OPEN_METHODS:
            return handler
        presented = _bearer(handler_call_details.invocation_metadata)  # type: ignore[attr-defined]
        client = self.tokens.match(presented) if presented is not None else None
        if client is None:
            self.on_call("unknown", "unauthenticated")
            what = "missing" if presented is None else "not valid"
            return _deny(handler, grpc.StatusCode.UNAUTHENTICATED,
                         f"authorization: bearer token {what} (metadata 'authorization: Bearer <token>')")
        wait = self.limiter.take(client) if self.limiter is not None else 0.0
        if wait > 0:
            self.on_call(client, "rate_limited")
            message = f"rate limit of {self.limiter.rate:g} calls/s for this client; retry in {wait:.2f}s"
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            return _deny(handler, code, message, trailers(code, message, [retry_after(wait)]))
        self.on_call(client, "ok")
        return handler

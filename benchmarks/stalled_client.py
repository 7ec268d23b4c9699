"""A gRPC client that opens Rank streams and never reads them: the slow client a server must survive.

It speaks HTTP/2 itself (h2) so that "never reads" is exact: it announces a stream flow-control window of
0 and never opens it, so the server cannot send a single message byte on any of its streams. A stock
gRPC client reads into its own buffers whatever the application does. Each stream carries a
``grpc-timeout``; the server must end it (RST_STREAM, or trailers) once that deadline passes.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings

RANK_PATH = "/ranking.v1.Ranker/Rank"


@dataclass
class StreamEnd:
    seconds: float  # from opening to its end
    how: str  # "reset" (RST_STREAM) or "trailers"
    grpc_status: str = ""
    grpc_message: str = ""


@dataclass
class StalledStreams:
    host: str
    port: int
    token: str | None = None
    opened: dict[int, float] = field(default_factory=dict)
    timeouts: dict[int, float] = field(default_factory=dict)  # each stream's grpc-timeout, seconds
    ended: dict[int, StreamEnd] = field(default_factory=dict)
    data_bytes: int = 0  # message bytes the server managed to send (0 while the window stays shut)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                         header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        self._flush()

    def open(self, request: bytes, timeout_s: float) -> int:
        """Send one Rank request (serialized ``RankRequest``) on a new stream; never read its answer."""
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":path", RANK_PATH),
                   (":authority", f"{self.host}:{self.port}"), ("content-type", "application/grpc"),
                   ("te", "trailers"), ("grpc-timeout", f"{max(1, int(timeout_s * 1000))}m")]
        if self.token:
            headers.append(("authorization", f"Bearer {self.token}"))
        self.conn.send_headers(sid, headers)
        self.conn.send_data(sid, b"\0" + struct.pack(">I", len(request)) + request, end_stream=True)
        self.opened[sid] = time.monotonic()
        self.timeouts[sid] = timeout_s
        self._flush()
        return sid

    def pump(self, seconds: float) -> None:
        """Handle what the server sends for ``seconds`` (never opening a stream's window)."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            self.sock.settimeout(min(left, 0.2))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            for event in self.conn.receive_data(chunk):
                self._on(event)
            self._flush()

    def _on(self, event: h2.events.Event) -> None:
        sid = getattr(event, "stream_id", 0)
        if isinstance(event, h2.events.StreamReset) and sid in self.opened:
            self.ended.setdefault(sid, StreamEnd(time.monotonic() - self.opened[sid], "reset"))
        elif isinstance(event, h2.events.TrailersReceived | h2.events.ResponseReceived) \
                and sid in self.opened:
            h = dict(event.headers)
            # Trailers, or a trailers-only response (an error before any message): both carry the status.
            if "grpc-status" in h or isinstance(event, h2.events.TrailersReceived):
                self.ended.setdefault(sid, StreamEnd(time.monotonic() - self.opened[sid], "trailers",
                                                     h.get("grpc-status", ""), h.get("grpc-message", "")))
        elif isinstance(event, h2.events.DataReceived):
            self.data_bytes += len(event.data)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self._flush()
        except OSError:
            pass
        self.sock.close()

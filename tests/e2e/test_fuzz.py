"""A property-based fuzzer over every RPC of the real server: messages generated from the proto
descriptors (hypothesis), and raw garbage bytes.

Every field gets hostile values: NaN and ±inf, huge and unusual unicode strings, empty strings and
whitespace, integers at and beyond what the server accepts, unknown enum numbers, repeated fields with up
to 10^5 elements. A message must get OK or INVALID_ARGUMENT whose message and google.rpc BadRequest name
a field of the request (RESOURCE_EXHAUSTED only for a message over the receive limit); never INTERNAL,
UNKNOWN or a crash. Garbage bytes may get any status gRPC gives an undecodable message, but the server
must keep serving. CI sends FUZZ_MESSAGES per RPC; the slow tier (`pytest -m slow`) sends 10,000.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from protos.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from tests.conftest import Artifacts
from tests.e2e.test_server import Running, error_detail, rank, start_server, stop_server

FUZZ_MESSAGES = int(os.environ.get("RANKSERVE_FUZZ_MESSAGES", "150"))
SLOW_MESSAGES = 10_000
RECEIVE_LIMIT = 1 << 20  # Settings.max_receive_message_bytes
FD = FieldDescriptor
INT_RANGES = {FD.TYPE_INT32: (-(2**31), 2**31 - 1), FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
              FD.TYPE_INT64: (-(2**63), 2**63 - 1), FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
              FD.TYPE_UINT32: (0, 2**32 - 1), FD.TYPE_UINT64: (0, 2**64 - 1)}
ODD_STRINGS = ["", " ", "\t\n ", "\u200b", "\x00", "\u202e" + "sofa", "ソファ", "💥" * 50, "a" * 600,
               "x" * 100_000, "'; DROP TABLE events; --", "%s%n", "../../etc/passwd"]


def _scalar(fd: FieldDescriptor) -> st.SearchStrategy:
    if fd.type == FD.TYPE_STRING:
        return st.one_of(st.text(max_size=40), st.sampled_from(ODD_STRINGS))
    if fd.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=64 if fd.type == FD.TYPE_DOUBLE else 32)
    if fd.type in INT_RANGES:
        low, high = INT_RANGES[fd.type]
        edges = [low, high, 0, 1, -1 if low < 0 else 2, 10**9, 1000, 1001, 200, 201]
        return st.one_of(st.integers(low, high), st.sampled_from([e for e in edges if low <= e <= high]))
    if fd.type == FD.TYPE_BOOL:
        return st.booleans()
    if fd.type == FD.TYPE_ENUM:  # proto3 enums are open: numbers nobody defined arrive too
        return st.integers(-(2**31), 2**31 - 1)
    if fd.type == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    raise NotImplementedError(fd.type)


@st.composite
def messages(draw: DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    """A message of ``descriptor`` with a random subset of its fields set to hostile values."""
    msg = descriptor._concrete_class()
    for fd in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if fd.type == FD.TYPE_MESSAGE:
            if depth < 3 and not fd.is_repeated:
                getattr(msg, fd.name).CopyFrom(draw(messages(fd.message_type, depth + 1)))
            continue
        value = _scalar(fd)
        if fd.is_repeated:
            values = draw(st.one_of(st.lists(value, max_size=6),
                                    value.map(lambda v: [v] * 100_000)))  # 10^5 elements
            getattr(msg, fd.name).extend(values)
        else:
            setattr(msg, fd.name, draw(value))
    return msg


@pytest.fixture(scope="module")
def server(artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_server(artifacts, tmp_path_factory.mktemp("fuzz"))
    yield running
    assert stop_server(running) == 0, running.log_tail()


def check_status(err: grpc.RpcError | None, request: Message, fields: Descriptor) -> None:
    """OK, or INVALID_ARGUMENT naming a field of ``fields`` (in message and details), or
    RESOURCE_EXHAUSTED for a message over the receive limit."""
    if err is None:
        return
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and request.ByteSize() > RECEIVE_LIMIT:
        return
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details, str(request)[:500])
    field = details.split(":", 1)[0]
    assert field.split(".")[0].split("[")[0] in fields.fields_by_name, details
    [violation] = error_detail(err, error_details_pb2.BadRequest).field_violations
    assert violation.field == field


def fuzz_rank(stub: ranking_pb2_grpc.RankerStub, request: ranking_pb2.RankRequest) -> None:
    try:
        msgs = list(stub.Rank(request, timeout=60))
        assert msgs[-1].HasField("summary")
        err = None
    except grpc.RpcError as exc:
        err = exc
    check_status(err, request, ranking_pb2.RankRequest.DESCRIPTOR)


def fuzz_feedback(stub: ranking_pb2_grpc.RankerStub, events: list[ranking_pb2.FeedbackEvent]) -> None:
    try:
        ack = stub.Feedback(iter(events), timeout=60)
        assert ack.accepted + ack.duplicates == len(events)
        err = None
    except grpc.RpcError as exc:
        err = exc
    if err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert max(e.ByteSize() for e in events) > RECEIVE_LIMIT, err.details()
        return
    check_status(err, ranking_pb2.FeedbackEvent(), ranking_pb2.FeedbackEvent.DESCRIPTOR)


FUZZ = settings(max_examples=FUZZ_MESSAGES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
SLOW = settings(FUZZ, max_examples=SLOW_MESSAGES)


def _rank_property(server: Running) -> None:
    @given(messages(ranking_pb2.RankRequest.DESCRIPTOR))
    def run(request: ranking_pb2.RankRequest) -> None:
        fuzz_rank(server.stub, request)
    return run


def _feedback_property(server: Running) -> None:
    @given(st.lists(messages(ranking_pb2.FeedbackEvent.DESCRIPTOR), min_size=1, max_size=4))
    def run(events: list[ranking_pb2.FeedbackEvent]) -> None:
        fuzz_feedback(server.stub, events)
    return run


def _info_property(server: Running) -> None:
    @given(messages(ranking_pb2.InfoRequest.DESCRIPTOR))
    def run(request: ranking_pb2.InfoRequest) -> None:
        assert server.stub.Info(request, timeout=30).items > 0
    return run


def _garbage_property(server: Running) -> None:
    methods = [(server.channel.unary_stream, "Rank"), (server.channel.stream_unary, "Feedback"),
               (server.channel.unary_unary, "Info")]

    @given(st.binary(max_size=4096), st.sampled_from(methods))
    def run(raw: bytes, method: tuple) -> None:
        make, name = method
        call = make(f"/ranking.v1.Ranker/{name}")  # no serializer: the bytes go out as they are
        try:
            out = call(iter([raw]) if name == "Feedback" else raw, timeout=30)
            if name == "Rank":
                list(out)
        except grpc.RpcError as exc:
            # Bytes that do not decode are refused naming the request; bytes that happen to decode
            # (b"" is an empty RankRequest) are refused naming the field, like any message.
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (exc.code(), exc.details())
            assert re.match(r"^[a-z_][a-z_.\[\]0-9]*: ", exc.details()), exc.details()
    return run


PROPERTIES = {"rank": _rank_property, "feedback": _feedback_property, "info": _info_property,
              "garbage": _garbage_property}


@pytest.mark.parametrize("rpc", list(PROPERTIES))
def test_fuzz(server: Running, rpc: str) -> None:
    FUZZ(PROPERTIES[rpc](server))()
    assert server.proc.poll() is None  # never a crash
    assert rank(server.stub, "oak desk", k=3)[2].items_returned == 3  # and it still serves


@pytest.mark.slow
@pytest.mark.parametrize("rpc", list(PROPERTIES))
def test_fuzz_ten_thousand(server: Running, rpc: str) -> None:
    SLOW(PROPERTIES[rpc](server))()
    assert server.proc.poll() is None
    assert rank(server.stub, "oak desk", k=3)[2].items_returned == 3

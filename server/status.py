"""google.rpc.Status details on gRPC errors (grpcio-status): the one place they are packed.

A client library reads them from the `grpc-status-details-bin` trailer: `BadRequest` names the field
that was wrong, `RetryInfo` says how long to back off.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


def field_violation(field: str, description: str) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=field, description=description)])


def retry_after(seconds: float) -> error_details_pb2.RetryInfo:
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromTimedelta(timedelta(seconds=seconds))
    return info


def trailers(code: grpc.StatusCode, message: str, details: Sequence[Message] = ()) -> tuple:
    """The trailing metadata that carries ``details`` beside ``code`` and ``message``."""
    packed = []
    for d in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(d)
        packed.append(any_detail)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    return rpc_status.to_status(status).trailing_metadata

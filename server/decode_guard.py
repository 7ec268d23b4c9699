"""Bytes that are not a message of the method's request type get INVALID_ARGUMENT, not UNKNOWN.

gRPC decodes a request before any handler runs and answers a decode error with UNKNOWN ("Unexpected
DecodeError"), which tells a client nothing and looks like a server fault on dashboards. This interceptor
gives the Ranker's handlers a decoder that turns such bytes into a marker: a unary call ends with
INVALID_ARGUMENT before the servicer sees anything; in a stream the bad message raises the servicer's own
InvalidArgument (field "request"), so Feedback commits the events before it and says how many, as for
any bad event. Health and reflection keep gRPC's handling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError

from server.convert import InvalidArgument
from server.status import field_violation, trailers

GUARDED = "/ranking.v1.Ranker/"
DETAIL = "not a valid protobuf message of this method's request type"
MESSAGE = f"request: {DETAIL}"


class Undecodable:
    """What a request decoder returns for bytes that are not a message."""


def _tolerant(decode: Callable[[bytes], object]) -> Callable[[bytes], object]:
    def load(data: bytes) -> object:
        try:
            return decode(data)
        except DecodeError:
            return Undecodable()
    return load


async def _refuse(context: grpc.aio.ServicerContext) -> None:
    code = grpc.StatusCode.INVALID_ARGUMENT
    await context.abort(code, MESSAGE, trailing_metadata=trailers(code, MESSAGE,
                                                                  [field_violation("request", MESSAGE)]))


def _guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with a tolerant decoder and a behaviour that refuses undecodable requests."""
    if handler.unary_unary:
        inner = handler.unary_unary

        async def unary_unary(request: object, context: grpc.aio.ServicerContext) -> object:
            if isinstance(request, Undecodable):
                await _refuse(context)
            return await inner(request, context)
        behaviour, make = unary_unary, grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        inner_stream = handler.unary_stream

        async def unary_stream(request: object, context: grpc.aio.ServicerContext) -> AsyncIterator[object]:
            if isinstance(request, Undecodable):
                await _refuse(context)
            async for response in inner_stream(request, context):  # Rank: an async generator
                yield response
        behaviour, make = unary_stream, grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        inner_sink = handler.stream_unary

        async def checked(requests: AsyncIterator[object], context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[object]:
            async for request in requests:
                if isinstance(request, Undecodable):
                    raise InvalidArgument("request", DETAIL)
                yield request

        async def stream_unary(requests: AsyncIterator[object], context: grpc.aio.ServicerContext) -> object:
            return await inner_sink(checked(requests, context), context)
        behaviour, make = stream_unary, grpc.stream_unary_rpc_method_handler
    else:
        return handler  # no bidirectional streams in ranking.v1 (reflection's is not guarded)
    return make(behaviour, request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer)


class DecodeGuard(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or handler.request_deserializer is None or not method.startswith(GUARDED):
            return handler
        return _guard(handler)

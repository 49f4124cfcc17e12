"""Map the project's errors to gRPC status codes, so callers never see a stack trace.

Only the project's typed errors say what the caller got wrong; any other exception, a bare
``ValueError`` or ``KeyError`` included, is a bug or an outage on the service's side and becomes
INTERNAL (logged with its traceback, the caller told to look at the service log). Request bytes
that do not decode as the RPC's message (invalid UTF-8 in a string field, corrupt wire data) are
INVALID_ARGUMENT: :class:`DecodingInterceptor` answers them before any handler runs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from cotdistill.common.errors import (
    ConfigError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


def status_for(error: BaseException) -> grpc.StatusCode:
    """The gRPC status code that describes ``error`` to a caller."""
    if isinstance(error, (InvalidArgument, ConfigError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(error, FailedPrecondition):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(error, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, Unavailable):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(error, ResourceExhausted):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INTERNAL


async def abort_with(context: grpc.aio.ServicerContext, error: BaseException) -> None:
    """Abort the call with the status for ``error``; internal errors are logged, not leaked."""
    code = status_for(error)
    if code is grpc.StatusCode.INTERNAL:
        log.exception("internal error", exc_info=error)
        await context.abort(code, f"internal error ({type(error).__name__}); see the service log")
    await context.abort(code, str(error))


def unary_errors(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorate a unary servicer method so project errors become proper status codes."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await abort_with(context, exc)
            raise  # unreachable: abort raises

    return wrapper


def stream_errors(fn: Callable[..., AsyncIterator[T]]) -> Callable[..., AsyncIterator[T]]:
    """Like :func:`unary_errors` for server-streaming methods."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[T]:
        try:
            async for item in fn(self, request, context):
                yield item
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await abort_with(context, exc)

    return wrapper


class _Undecodable:
    """Stands in for a request whose bytes did not parse (the handler then answers INVALID_ARGUMENT)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def message(self) -> str:
        # DecodeError says "Error parsing message with type 'cotdistill.v1.X': String field had bad UTF-8".
        return f"request: the message does not decode ({self.error})"


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as err:  # protobuf's DecodeError, or anything its parser raises
            return _Undecodable(err)

    return decode


class DecodingInterceptor(grpc.aio.ServerInterceptor):
    """Undecodable request bytes -> INVALID_ARGUMENT naming the problem.

    grpc itself answers them UNKNOWN with the exception's class name
    ("Unexpected <class 'google.protobuf.message.DecodeError'>"), which reads like a server
    fault. Unary and server-streaming handlers get a deserializer that never raises, and a
    handler that aborts when the request did not decode.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        if handler.unary_unary:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, _Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message())
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, _tolerant(handler.request_deserializer), handler.response_serializer
            )
        if handler.unary_stream:
            inner_us: Any = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if isinstance(request, _Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message())
                async for item in inner_us(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, _tolerant(handler.request_deserializer), handler.response_serializer
            )
        return handler

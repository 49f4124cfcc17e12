"""Map the project's errors to gRPC status codes, so callers never see a stack trace."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from cotdistill.common.errors import ConfigError, InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


def status_for(error: BaseException) -> grpc.StatusCode:
    """The gRPC status code that describes ``error`` to a caller."""
    if isinstance(error, (InvalidArgument, ConfigError, ValueError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, (NotFound, FileNotFoundError, KeyError)):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, Unavailable):
        return grpc.StatusCode.UNAVAILABLE
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

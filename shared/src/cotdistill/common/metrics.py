"""Prometheus helpers: a /metrics listener and per-RPC metrics for every gRPC service.

Every metric carries a unit suffix and a help string. RPC metrics are recorded by one server
interceptor, so a service's domain code only records what is specific to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# A call cancelled this close to its deadline counts as DEADLINE_EXCEEDED (see _status_of).
DEADLINE_SLACK_S = 0.25

# Buckets for RPC latency: sub-millisecond health checks up to multi-minute sampling streams.
LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def new_registry() -> CollectorRegistry:
    """A registry with the standard process, platform and GC collectors.

    Each service instance owns its registry (never the global one), so several services can
    live in one test process without duplicate-metric errors.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def start_metrics_server(host: str, port: int, registry: CollectorRegistry) -> tuple[int, Callable[[], None]]:
    """Serve ``/metrics`` over HTTP on a background thread.

    Returns the bound port (useful with ``port=0``) and a function that stops the listener.
    """
    httpd, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

    return int(httpd.server_port), stop


class RpcMetrics:
    """The gRPC metrics of one service process (``cotdistill_grpc_*``)."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.requests = Counter(
            "cotdistill_grpc_requests_total",
            "gRPC calls finished, by method and status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "cotdistill_grpc_request_duration_seconds",
            "Wall time of a gRPC call from arrival to its last message, by method.",
            ["service", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.in_flight = Gauge(
            "cotdistill_grpc_in_flight_requests",
            "gRPC calls being handled now, by method.",
            ["service", "method"],
            registry=registry,
        )
        self.ready = Gauge(
            "cotdistill_service_ready",
            "1 when the service reports SERVING on its health check, else 0.",
            ["service"],
            registry=registry,
        )
        self.ready.labels(service).set(0)


def _status_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, grpc.aio.AbortError) or error is None:
        code = context.code()
        if code is None:
            return "OK" if error is None else "UNKNOWN"
        return code.name if isinstance(code, grpc.StatusCode) else str(code)
    if isinstance(error, (TimeoutError,)):
        return "DEADLINE_EXCEEDED"
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        # grpc cancels the handler both when the client cancels and when its deadline passes. The
        # client's own timer often fires first (the server's deadline started when the request
        # arrived, a moment after the client's), so its cancel lands just before the server's
        # deadline: within DEADLINE_SLACK_S of it, the deadline ended the call.
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= DEADLINE_SLACK_S else "CANCELLED"
    return "UNKNOWN"


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts calls by status, times them and tracks in-flight calls, for every RPC shape."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._m = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = str(handler_call_details.method).rsplit("/", 1)[-1]
        m, service = self._m, self._m.service

        def finish(context: grpc.aio.ServicerContext, start: float, error: BaseException | None) -> None:
            m.in_flight.labels(service, method).dec()
            m.latency.labels(service, method).observe(time.perf_counter() - start)
            m.requests.labels(service, method, _status_of(context, error)).inc()

        if handler.unary_unary:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                start = time.perf_counter()
                m.in_flight.labels(service, method).inc()
                error: BaseException | None = None
                try:
                    return await inner_uu(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finish(context, start, error)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            inner_us: Any = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                start = time.perf_counter()
                m.in_flight.labels(service, method).inc()
                error: BaseException | None = None
                try:
                    async for item in inner_us(request, context):
                        yield item
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finish(context, start, error)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        # Client- and bidi-streaming RPCs are not part of the API; pass them through untouched.
        return handler

"""The frame every gRPC service shares: health, reflection, metrics, graceful shutdown.

``create_server(...)`` binds (port 0 in tests) and returns a :class:`GrpcService` with the chosen
ports; ``serve(...)`` runs it until SIGTERM/SIGINT, then runs the service's before-stop hooks,
drains in-flight calls within the grace period and runs its clean-ups. Health reports
NOT_SERVING until the service marks itself ready (e.g. the model loaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from cotdistill.common.grpc_errors import DecodingInterceptor
from cotdistill.common.metrics import MetricsInterceptor, RpcMetrics, new_registry, start_metrics_server
from cotdistill.common.settings import ServiceSettings

log = logging.getLogger(__name__)

# The asyncio health servicer; the stubs of grpcio-health-checking do not declare the aio module.
AsyncHealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]

# Large enough for a Sample stream message of 4k tokens x top-20 (~0.6 MB) with room to spare.
MAX_MESSAGE_BYTES = 64 << 20

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Accept client keepalive pings every 10 s so idle streams through load balancers survive.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]


@dataclass
class GrpcService:
    """A bound, started gRPC server with its health and metrics endpoints."""

    name: str
    server: grpc.aio.Server
    port: int
    metrics_port: int
    service_names: Sequence[str]
    health: Any  # AsyncHealthServicer
    metrics: RpcMetrics
    registry: CollectorRegistry
    _stop_metrics: Callable[[], None] = field(repr=False)
    _before_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list, repr=False)
    _on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list, repr=False)

    async def set_serving(self, serving: bool) -> None:
        """Report SERVING (ready) or NOT_SERVING for the whole server and each service name."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)
        self.metrics.ready.labels(self.name).set(1 if serving else 0)

    def before_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` when the stop begins, before the drain: end what would otherwise hold
        the drain for the whole grace period (the trainer's open WatchRun streams)."""
        self._before_stop.append(callback)

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` after in-flight calls drained (release engines, close pools)."""
        self._on_stop.append(callback)

    async def stop(self, grace_s: float) -> None:
        """Run the before-stop hooks, stop accepting calls, drain in-flight ones for up to
        ``grace_s``, then run the on-stop clean-ups (last registered first)."""
        await _run_all(self._before_stop, "before-stop hook")
        await self.set_serving(False)
        await self.server.stop(grace_s)
        await _run_all(list(reversed(self._on_stop)), "shutdown callback")
        self._stop_metrics()


async def _run_all(callbacks: Sequence[Callable[[], Awaitable[None]]], what: str) -> None:
    for callback in callbacks:
        try:
            await callback()
        except Exception:  # a failing clean-up must not hide the others
            log.exception("%s failed", what)


async def create_server(
    name: str,
    settings: ServiceSettings,
    register: Callable[[grpc.aio.Server], Sequence[str]],
    registry: CollectorRegistry | None = None,
) -> GrpcService:
    """Build, bind and start a gRPC server.

    Args:
        name: service name for metrics and logs, e.g. "teacher".
        settings: host/port and metrics listener.
        register: adds the domain servicers to the server and returns their full service names
            (from the proto descriptors) for health and reflection.
        registry: where the service's own metrics live (from :func:`new_registry`); the RPC
            metrics are added to it and it is what /metrics serves.
    """
    registry = registry if registry is not None else new_registry()
    metrics = RpcMetrics(name, registry)
    # Metrics first, so they count the INVALID_ARGUMENT answers to undecodable requests too.
    interceptors = [MetricsInterceptor(metrics), DecodingInterceptor()]
    server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
    service_names = list(register(server))
    health_servicer = AsyncHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"cannot bind {settings.host}:{settings.port} for the {name} service")
    metrics_port, stop_metrics = start_metrics_server(settings.metrics_host, settings.metrics_port, registry)
    await server.start()
    service = GrpcService(
        name, server, port, metrics_port, service_names, health_servicer, metrics, registry, stop_metrics
    )
    await service.set_serving(False)
    log.info("%s listening on %s:%d (metrics on %s:%d)", name, settings.host, port, settings.metrics_host, metrics_port)
    return service


async def serve(service: GrpcService, grace_s: float) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully (:meth:`GrpcService.stop`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s: shutdown requested; draining for up to %.1f s", service.name, grace_s)
    await service.stop(grace_s)
    log.info("%s: stopped", service.name)

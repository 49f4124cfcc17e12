"""Build and run the teacher gRPC server.

The server binds and answers health checks at once (NOT_SERVING), loads the model in the
background and only then reports SERVING, so orchestrators route no traffic to a replica whose
weights are still loading. On SIGTERM it reports NOT_SERVING, drains in-flight streams for the
grace period and then releases the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from cotdistill.common.grpc_server import GrpcService, create_server, serve
from cotdistill.common.metrics import new_registry
from cotdistill.teacher.engine import Engine
from cotdistill.teacher.engines import create_engine
from cotdistill.teacher.metrics import TeacherMetrics
from cotdistill.teacher.servicer import TeacherServicer
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc

SERVICE_NAME = teacher_pb2.DESCRIPTOR.services_by_name["TeacherService"].full_name

log = logging.getLogger(__name__)


@dataclass
class TeacherServer:
    """A started teacher: the gRPC frame, its servicer and engine."""

    service: GrpcService
    servicer: TeacherServicer
    engine: Engine
    health_interval_s: float = 5.0
    _watch: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Load the model, then report SERVING and keep checking the engine's health."""
        await self.engine.start()
        self.servicer.ready = True
        await self.service.set_serving(True)
        info = self.engine.info()
        log.info("teacher ready: %s (%s, context %d)", info.model_id, info.backend, info.context_length)
        if self.health_interval_s > 0:
            self._watch = asyncio.create_task(self._watch_health())

    async def _watch_health(self) -> None:
        """NOT_SERVING while the engine fails its health check (dead worker, dead vLLM core), so
        load balancers and the sampling job's replica pool route around this replica."""
        healthy = True
        while True:
            await asyncio.sleep(self.health_interval_s)
            try:
                await asyncio.wait_for(self.engine.check_health(), timeout=max(self.health_interval_s, 5.0))
                ok = True
            except Exception as exc:
                ok = False
                if healthy:
                    log.error("teacher engine failed its health check: %s", exc)
            if ok != healthy:
                healthy = ok
                self.servicer.ready = ok
                await self.service.set_serving(ok)
                if ok:
                    log.info("teacher engine healthy again")

    async def stop_watching(self) -> None:
        """Stop the health watch (before the engine closes, so a closing engine is not an error)."""
        if self._watch is not None:
            self._watch.cancel()

    async def stop(self, grace_s: float) -> None:
        self.servicer.ready = False
        await self.service.stop(grace_s)


async def build_server(settings: TeacherSettings, engine: Engine | None = None) -> TeacherServer:
    """Bind and start the server (NOT_SERVING); call :meth:`TeacherServer.load` to load the model."""
    engine = engine if engine is not None else create_engine(settings)
    registry = new_registry()
    metrics = TeacherMetrics(registry)
    servicer = TeacherServicer(settings, engine, metrics)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        teacher_pb2_grpc.add_TeacherServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    service = await create_server("teacher", settings, register, registry)
    service.on_stop(engine.close)
    teacher = TeacherServer(service, servicer, engine, settings.health_check_interval_s)
    service.on_stop(teacher.stop_watching)  # callbacks run in reverse: this one before engine.close
    return teacher


async def run(settings: TeacherSettings) -> None:
    teacher = await build_server(settings)
    loading = asyncio.create_task(teacher.load())
    serving = asyncio.create_task(serve(teacher.service, settings.grace_period_s))
    done, _ = await asyncio.wait({loading, serving}, return_when=asyncio.FIRST_COMPLETED)
    if loading in done and loading.exception() is not None:
        error = loading.exception()
        log.error("teacher: loading the model failed: %s", error)
        serving.cancel()
        await teacher.stop(0)
        raise SystemExit(1) from error
    await serving
    if not loading.done():
        loading.cancel()
    if teacher._watch is not None:
        teacher._watch.cancel()

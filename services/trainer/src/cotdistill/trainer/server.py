"""Build and run the trainer gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

import grpc

from cotdistill.common.grpc_server import GrpcService, create_server
from cotdistill.common.metrics import new_registry
from cotdistill.trainer.manager import Executor, RunManager, SpecValidator, validate_recipe
from cotdistill.trainer.metrics import TrainerMetrics
from cotdistill.trainer.servicer import TrainerServicer
from cotdistill.trainer.settings import TrainerSettings
from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


async def build_server(
    settings: TrainerSettings, executor: Executor | None = None, validate: SpecValidator = validate_recipe
) -> GrpcService:
    """Bind and start the server, take over runs a previous process left active, report SERVING.

    ``executor`` defaults to Ray Train (:class:`RayExecutor`); Ray itself starts on the first run.
    """
    service, _ = await build(settings, executor, validate)
    return service


async def build(
    settings: TrainerSettings, executor: Executor | None = None, validate: SpecValidator = validate_recipe
) -> tuple[GrpcService, RunManager]:
    """:func:`build_server`, also returning the run manager."""
    if executor is None:
        from cotdistill.trainer.ray_runner import RayExecutor

        executor = RayExecutor(settings)
    registry = new_registry()
    manager = RunManager(settings, executor, TrainerMetrics(registry), validate=validate)
    servicer = TrainerServicer(manager)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    service = await create_server("trainer", settings, register, registry)
    if settings.ray_start == "eager":
        # After binding (Ray takes random ports and could take ours) and before SERVING: Ray's
        # start-up holds the process for seconds, which must not happen while runs are served.
        executor.start()
    await manager.start()

    async def stop_runs() -> None:
        await manager.shutdown(settings.grace_period_s)

    service.on_stop(stop_runs)
    await service.set_serving(True)
    return service, manager


async def run(settings: TrainerSettings) -> None:
    """Serve until SIGTERM/SIGINT; then end watch streams, drain RPCs and stop runs before their next micro-batch."""
    service, manager = await build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("trainer: shutdown requested; active runs stop before their next micro-batch and resume on restart")
    manager.stop_watchers()
    await service.stop(settings.grace_period_s)
    log.info("trainer: stopped")

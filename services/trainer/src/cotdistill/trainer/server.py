"""Build and run the trainer gRPC server."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

from cotdistill.common.grpc_server import GrpcService, create_server, serve
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

    async def end_watches() -> None:
        log.info("trainer: active runs stop before their next micro-batch and resume on restart")
        manager.stop_watchers()

    async def stop_runs() -> None:
        await manager.shutdown(settings.grace_period_s)

    # Open WatchRun streams would hold the drain for the whole grace period before the runs even
    # get the stop request: end them first, stop the runs once the RPCs drained.
    service.before_stop(end_watches)
    service.on_stop(stop_runs)
    await service.set_serving(True)
    return service, manager


async def run(settings: TrainerSettings) -> None:
    """Serve until SIGTERM/SIGINT; then end watch streams, drain RPCs and stop runs before their next micro-batch."""
    service = await build_server(settings)
    await serve(service, settings.grace_period_s)

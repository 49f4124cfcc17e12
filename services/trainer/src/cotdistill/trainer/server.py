"""Build and run the trainer gRPC server."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from cotdistill.common.grpc_server import GrpcService, create_server, serve
from cotdistill.trainer.servicer import TrainerServicer
from cotdistill.trainer.settings import TrainerSettings
from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


async def build_server(settings: TrainerSettings) -> GrpcService:
    """Bind and start the server and report SERVING."""
    servicer = TrainerServicer(settings)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    service = await create_server("trainer", settings, register)
    await service.set_serving(True)
    return service


async def run(settings: TrainerSettings) -> None:
    service = await build_server(settings)
    await serve(service, settings.grace_period_s)

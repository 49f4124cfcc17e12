"""Build and run the evaluator gRPC server."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from cotdistill.common.grpc_server import GrpcService, create_server, serve
from cotdistill.evaluator.servicer import EvaluatorServicer
from cotdistill.evaluator.settings import EvaluatorSettings
from cotdistill.v1 import evaluator_pb2, evaluator_pb2_grpc

SERVICE_NAME = evaluator_pb2.DESCRIPTOR.services_by_name["EvaluatorService"].full_name


async def build_server(settings: EvaluatorSettings) -> GrpcService:
    """Bind and start the server and report SERVING."""
    servicer = EvaluatorServicer(settings)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        evaluator_pb2_grpc.add_EvaluatorServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    service = await create_server("evaluator", settings, register)
    await service.set_serving(True)
    return service


async def run(settings: EvaluatorSettings) -> None:
    service = await build_server(settings)
    await serve(service, settings.grace_period_s)

"""Build and run the evaluator gRPC server."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from cotdistill.common.grpc_server import GrpcService, create_server, serve
from cotdistill.common.metrics import new_registry
from cotdistill.evaluator.metrics import EvaluatorMetrics
from cotdistill.evaluator.servicer import EvaluatorServicer
from cotdistill.evaluator.settings import EvaluatorSettings
from cotdistill.evaluator.suite import TaskSuite
from cotdistill.v1 import evaluator_pb2, evaluator_pb2_grpc

SERVICE_NAME = evaluator_pb2.DESCRIPTOR.services_by_name["EvaluatorService"].full_name


async def build_server(settings: EvaluatorSettings, suite: TaskSuite | None = None) -> GrpcService:
    """Bind and start the server and report SERVING (models load per request, so it is ready at once)."""
    registry = new_registry()
    servicer = EvaluatorServicer(settings, EvaluatorMetrics(registry), suite)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        evaluator_pb2_grpc.add_EvaluatorServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    service = await create_server("evaluator", settings, register, registry)
    await service.set_serving(True)
    return service


async def run(settings: EvaluatorSettings) -> None:
    service = await build_server(settings)
    await serve(service, settings.grace_period_s)

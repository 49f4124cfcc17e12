"""Build and run the teacher gRPC server."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from cotdistill.common.grpc_server import GrpcService, create_server, serve
from cotdistill.teacher.servicer import TeacherServicer
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc

SERVICE_NAME = teacher_pb2.DESCRIPTOR.services_by_name["TeacherService"].full_name


async def build_server(settings: TeacherSettings) -> GrpcService:
    """Bind and start the server; it reports SERVING once the engine is ready."""
    servicer = TeacherServicer(settings)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        teacher_pb2_grpc.add_TeacherServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    service = await create_server("teacher", settings, register)
    await service.set_serving(True)
    return service


async def run(settings: TeacherSettings) -> None:
    service = await build_server(settings)
    await serve(service, settings.grace_period_s)

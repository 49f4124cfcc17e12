"""gRPC servicer of the teacher: request validation and streaming around the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from cotdistill.common.grpc_errors import unimplemented
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc

PROVIDER = "sampling engines arrive with the teacher service work (issue: Teacher service)"


class TeacherServicer(teacher_pb2_grpc.TeacherServiceServicer):
    """Implements cotdistill.v1.TeacherService."""

    def __init__(self, settings: TeacherSettings) -> None:
        self.settings = settings

    async def Sample(
        self, request: teacher_pb2.SampleRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[teacher_pb2.SampleResponse]:
        await unimplemented(context, "Sample", PROVIDER)
        yield teacher_pb2.SampleResponse()  # pragma: no cover - abort raised above

    async def Score(
        self, request: teacher_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> teacher_pb2.ScoreResponse:
        return await unimplemented(context, "Score", PROVIDER)

    async def Info(
        self, request: teacher_pb2.InfoRequest, context: grpc.aio.ServicerContext
    ) -> teacher_pb2.InfoResponse:
        return await unimplemented(context, "Info", PROVIDER)

"""gRPC servicer of the trainer: run lifecycle around the training recipe."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from cotdistill.common.grpc_errors import unimplemented
from cotdistill.trainer.settings import TrainerSettings
from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc

PROVIDER = "training runs arrive with the trainer service work (issue: Trainer service)"


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """Implements cotdistill.v1.TrainerService."""

    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings

    async def StartRun(
        self, request: trainer_pb2.StartRunRequest, context: grpc.aio.ServicerContext
    ) -> trainer_pb2.StartRunResponse:
        return await unimplemented(context, "StartRun", PROVIDER)

    async def WatchRun(
        self, request: trainer_pb2.WatchRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[trainer_pb2.WatchRunResponse]:
        await unimplemented(context, "WatchRun", PROVIDER)
        yield trainer_pb2.WatchRunResponse()  # pragma: no cover - abort raised above

    async def GetRun(
        self, request: trainer_pb2.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> trainer_pb2.GetRunResponse:
        return await unimplemented(context, "GetRun", PROVIDER)

    async def ListRuns(
        self, request: trainer_pb2.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> trainer_pb2.ListRunsResponse:
        return await unimplemented(context, "ListRuns", PROVIDER)

    async def CancelRun(
        self, request: trainer_pb2.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> trainer_pb2.CancelRunResponse:
        return await unimplemented(context, "CancelRun", PROVIDER)

"""gRPC servicer of the trainer: a thin layer over :class:`RunManager`.

Errors become status codes through ``unary_errors`` / ``stream_errors``: a bad spec is
INVALID_ARGUMENT naming the RunSpec field, an unknown run id NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.grpc_errors import stream_errors, unary_errors
from cotdistill.trainer.manager import RunManager
from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc


def _require_run_id(run_id: str) -> str:
    if not run_id.strip():
        raise InvalidArgument("run_id", "empty; pass the id StartRun returned")
    return run_id


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """Implements cotdistill.v1.TrainerService."""

    def __init__(self, manager: RunManager) -> None:
        self.manager = manager

    @unary_errors
    async def StartRun(
        self, request: trainer_pb2.StartRunRequest, context: grpc.aio.ServicerContext
    ) -> trainer_pb2.StartRunResponse:
        if not request.HasField("spec"):
            raise InvalidArgument("spec", "missing: a RunSpec with at least student.model and data.train_paths")
        return trainer_pb2.StartRunResponse(run=self.manager.start_run(request.spec))

    @stream_errors
    async def WatchRun(
        self, request: trainer_pb2.WatchRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[trainer_pb2.WatchRunResponse]:
        async for event in self.manager.watch(_require_run_id(request.run_id), request.from_sequence):
            yield trainer_pb2.WatchRunResponse(event=event)

    @unary_errors
    async def GetRun(
        self, request: trainer_pb2.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> trainer_pb2.GetRunResponse:
        return trainer_pb2.GetRunResponse(run=self.manager.store.get(_require_run_id(request.run_id)))

    @unary_errors
    async def ListRuns(
        self, request: trainer_pb2.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> trainer_pb2.ListRunsResponse:
        if request.state not in trainer_pb2.RunState.values():
            raise InvalidArgument("state", f"unknown run state {request.state}")
        runs, token = self.manager.store.list_runs(request.state, request.page_size, request.page_token)
        return trainer_pb2.ListRunsResponse(runs=runs, next_page_token=token)

    @unary_errors
    async def CancelRun(
        self, request: trainer_pb2.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> trainer_pb2.CancelRunResponse:
        return trainer_pb2.CancelRunResponse(run=await self.manager.cancel(_require_run_id(request.run_id)))

"""gRPC servicer of the evaluator: evaluation and model selection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from cotdistill.common.grpc_errors import unimplemented
from cotdistill.evaluator.settings import EvaluatorSettings
from cotdistill.v1 import evaluator_pb2, evaluator_pb2_grpc

PROVIDER = "evaluation arrives with the evaluator service work (issue: Evaluator service)"


class EvaluatorServicer(evaluator_pb2_grpc.EvaluatorServiceServicer):
    """Implements cotdistill.v1.EvaluatorService."""

    def __init__(self, settings: EvaluatorSettings) -> None:
        self.settings = settings

    async def Evaluate(
        self, request: evaluator_pb2.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[evaluator_pb2.EvaluateResponse]:
        await unimplemented(context, "Evaluate", PROVIDER)
        yield evaluator_pb2.EvaluateResponse()  # pragma: no cover - abort raised above

    async def Select(
        self, request: evaluator_pb2.SelectRequest, context: grpc.aio.ServicerContext
    ) -> evaluator_pb2.SelectResponse:
        return await unimplemented(context, "Select", PROVIDER)

"""Optional evaluation of each checkpoint by the evaluator service (CheckpointSpec.evaluator_*).

The trainer service, not the Ray workers, calls the evaluator's ``Evaluate`` RPC over gRPC: the
workers keep training while the evaluator generates, and the trainer imports only the evaluator's
generated stubs (never ``cotdistill.evaluator``). The manager runs :func:`evaluate_checkpoint` as
a background task on its event loop and logs the result as an ``EvaluationEvent``.
"""

from __future__ import annotations

import grpc

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.grpc_client import open_channel
from cotdistill.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc, trainer_pb2

# An evaluation of a checkpoint on CPU can take minutes; this bounds a hung evaluator, not a slow one.
EVALUATE_TIMEOUT_S = 3600.0


class EvaluationFailed(Exception):
    """The evaluator could not evaluate a checkpoint; the message is one line for the run's log."""


def validate_checkpoint_eval(spec: trainer_pb2.RunSpec) -> None:
    """Both evaluator_address and evaluator_datasets, or neither; raises InvalidArgument."""
    ck = spec.checkpoints
    address, datasets = ck.evaluator_address.strip(), list(ck.evaluator_datasets)
    if datasets and not address:
        raise InvalidArgument("checkpoints.evaluator_address", "empty, but checkpoints.evaluator_datasets is set")
    if address and not datasets:
        raise InvalidArgument(
            "checkpoints.evaluator_address",
            "set, but checkpoints.evaluator_datasets is empty (name at least one dataset to evaluate on)",
        )
    for i, entry in enumerate(datasets):
        name, _, split = entry.partition(":")
        if not name.strip() or (":" in entry and not split.strip()):
            raise InvalidArgument(f"checkpoints.evaluator_datasets[{i}]", f"expected NAME or NAME:SPLIT; got {entry!r}")


def wants_evaluation(spec: trainer_pb2.RunSpec) -> bool:
    return bool(spec.checkpoints.evaluator_address.strip() and spec.checkpoints.evaluator_datasets)


def evaluate_request(spec: trainer_pb2.RunSpec, step: int, checkpoint_path: str) -> evaluator_pb2.EvaluateRequest:
    """The Evaluate request for the checkpoint at ``step`` (one format, every listed dataset)."""
    ck = spec.checkpoints
    datasets = []
    for entry in ck.evaluator_datasets:
        name, _, split = entry.partition(":")
        datasets.append(evaluator_pb2.EvalDataset(name=name.strip(), split=split.strip(), limit=ck.evaluator_limit))
    tags = {"role": "student"}
    if spec.name:
        tags["run"] = spec.name
    return evaluator_pb2.EvaluateRequest(
        model=common_pb2.ModelRef(checkpoint_path=checkpoint_path),
        datasets=datasets,
        formats=[ck.evaluator_format or spec.data.format],
        label=f"step-{step}",
        step=step,
        tags=tags,
    )


def accuracy_metrics(result: evaluator_pb2.EvaluationResult) -> dict[str, float]:
    """``{"<dataset>/accuracy": accuracy}`` (``"<dataset>/<format>/accuracy"`` if several formats)."""
    formats = {r.format for r in result.results}
    metrics = {}
    for r in result.results:
        key = f"{r.dataset}/accuracy" if len(formats) <= 1 else f"{r.dataset}/{r.format}/accuracy"
        metrics[key] = r.accuracy
    return metrics


async def evaluate_checkpoint(spec: trainer_pb2.RunSpec, step: int, checkpoint_path: str) -> dict[str, float]:
    """Evaluate one checkpoint with the evaluator at ``spec.checkpoints.evaluator_address``.

    Raises:
        EvaluationFailed: the RPC failed or ended without a result.
    """
    request = evaluate_request(spec, step, checkpoint_path)
    async with open_channel(spec.checkpoints.evaluator_address.strip()) as channel:
        stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
        result = None
        try:
            async for reply in stub.Evaluate(request, timeout=EVALUATE_TIMEOUT_S):
                if reply.HasField("result"):
                    result = reply.result
        except grpc.aio.AioRpcError as err:
            raise EvaluationFailed(f"{err.code().name}: {err.details()}") from None
    if result is None:
        raise EvaluationFailed("the evaluator ended the stream without a result")
    return accuracy_metrics(result)

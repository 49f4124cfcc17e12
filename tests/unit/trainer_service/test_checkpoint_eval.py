"""Checkpoint evaluation by the trainer service (CheckpointSpec.evaluator_*), over real gRPC.

Training is the scripted executor of test_service_lifecycle (checkpoints at steps 2 and 4); the
evaluator is a small planted EvaluatorService here. The real evaluator is exercised in
tests/integration/trainer/test_checkpoint_eval.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.pipeline.run_config import RunConfig
from cotdistill.pipeline.train_cli import build_spec
from cotdistill.trainer.checkpoint_eval import validate_checkpoint_eval
from cotdistill.trainer.server import build_server
from cotdistill.v1 import evaluator_pb2, evaluator_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from tests.conftest import free_port
from tests.unit.trainer_service.test_service_lifecycle import (
    Client,
    ScriptedExecutor,
    _accept,
    _settings,
    _spec,
    _watch,
)


class PlantedEvaluator(evaluator_pb2_grpc.EvaluatorServiceServicer):
    """Answers accuracy = step / 10 for every dataset; records the requests."""

    def __init__(self) -> None:
        self.requests: list[evaluator_pb2.EvaluateRequest] = []

    async def Evaluate(
        self, request: evaluator_pb2.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[evaluator_pb2.EvaluateResponse]:
        self.requests.append(request)
        results = [
            evaluator_pb2.DatasetResult(dataset=d.name, split=d.split or "test", format=f, accuracy=request.step / 10)
            for d in request.datasets
            for f in request.formats
        ]
        yield evaluator_pb2.EvaluateResponse(
            result=evaluator_pb2.EvaluationResult(label=request.label, results=results)
        )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Client]:
    svc = await build_server(_settings(tmp_path), executor=ScriptedExecutor(), validate=_accept)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
        yield svc, trainer_pb2_grpc.TrainerServiceStub(channel)
    await svc.stop(0)


@pytest.fixture
async def evaluator() -> AsyncIterator[tuple[str, PlantedEvaluator]]:
    planted = PlantedEvaluator()
    server = grpc.aio.server()
    evaluator_pb2_grpc.add_EvaluatorServiceServicer_to_server(planted, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", planted
    await server.stop(0)


def _with_eval(address: str, *datasets: str, fmt: str = "", limit: int = 0) -> trainer_pb2.RunSpec:
    spec = _spec()
    spec.data.format = "ft_cot"
    spec.checkpoints.evaluator_address = address
    spec.checkpoints.evaluator_datasets.extend(datasets)
    spec.checkpoints.evaluator_format = fmt
    spec.checkpoints.evaluator_limit = limit
    return spec


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.checkpoints.evaluator_datasets.append("synthetic_last_letters"), "checkpoints.evaluator_address"),
        (lambda s: setattr(s.checkpoints, "evaluator_address", "127.0.0.1:1"), "checkpoints.evaluator_address"),
        (
            lambda s: (
                setattr(s.checkpoints, "evaluator_address", "127.0.0.1:1"),
                s.checkpoints.evaluator_datasets.append("gsm8k:"),
            ),
            "checkpoints.evaluator_datasets[0]",
        ),
    ],
    ids=["datasets-without-address", "address-without-datasets", "empty-split"],
)
async def test_start_run_rejects_half_configured_evaluation(
    service: Client, mutate: Callable[[trainer_pb2.RunSpec], object], field: str
) -> None:
    _, stub = service
    spec = _spec()
    mutate(spec)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.StartRun(trainer_pb2.StartRunRequest(spec=spec))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field)


async def test_each_checkpoint_is_evaluated_and_logged(
    service: Client, evaluator: tuple[str, PlantedEvaluator]
) -> None:
    _, stub = service
    address, planted = evaluator
    spec = _with_eval(address, "synthetic_last_letters", "gsm8k:train", limit=5)
    run = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=spec))).run
    events = await _watch(stub, run.run_id)
    evaluations = [e.evaluation for e in events if e.HasField("evaluation")]
    assert [e.step for e in evaluations] == [2, 4]
    assert dict(evaluations[1].metrics) == pytest.approx(
        {"synthetic_last_letters/accuracy": 0.4, "gsm8k/accuracy": 0.4}
    )
    assert events[-1].state.state == trainer_pb2.RUN_STATE_SUCCEEDED  # evaluations logged before the end
    first = planted.requests[0]
    assert first.model.checkpoint_path.endswith("/ck2") and first.step == 2 and first.label == "step-2"
    assert list(first.formats) == ["ft_cot"]  # DataSpec.format when evaluator_format is empty
    assert [(d.name, d.split, d.limit) for d in first.datasets] == [
        ("synthetic_last_letters", "", 5),
        ("gsm8k", "train", 5),
    ]


async def test_an_unreachable_evaluator_is_a_message_not_a_failed_run(service: Client) -> None:
    _, stub = service
    spec = _with_eval(f"127.0.0.1:{free_port()}", "synthetic_last_letters", fmt="answer_only")
    run = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=spec))).run
    events = await _watch(stub, run.run_id)
    failures = [e.message for e in events if e.HasField("message") and "evaluation at step" in e.message]
    assert failures and failures[0].startswith("evaluation at step 2 failed: UNAVAILABLE"), failures
    assert not any(e.HasField("evaluation") for e in events)
    assert events[-1].state.state == trainer_pb2.RUN_STATE_SUCCEEDED


def test_recipe_maps_checkpoint_evaluation_from_the_evaluation_section(tmp_path: Path) -> None:
    config = RunConfig.model_validate(
        {
            "name": "cli",
            "output_dir": str(tmp_path / "runs"),
            "training": {
                "student": {"model": "models/s"},
                "evaluate_at_checkpoints": True,
                "checkpoints": {"evaluator_limit": 5},
            },
            "evaluation": {
                "evaluator_address": "127.0.0.1:50099",
                "datasets": [{"name": "synthetic_last_letters"}, {"name": "gsm8k", "split": "dev"}],
                "formats": ["answer_only", "ft_cot"],
            },
        }
    )
    ck = build_spec(config, ArtifactStore(tmp_path / "runs" / "cli")).checkpoints
    assert ck.evaluator_address == "127.0.0.1:50099"
    assert list(ck.evaluator_datasets) == ["synthetic_last_letters:test", "gsm8k:dev"]
    assert (ck.evaluator_format, ck.evaluator_limit) == ("answer_only", 5)
    validate_checkpoint_eval(build_spec(config, ArtifactStore(tmp_path / "runs" / "cli")))

    config.training.evaluate_at_checkpoints = False  # off by default: no evaluator call
    ck = build_spec(config, ArtifactStore(tmp_path / "runs" / "cli")).checkpoints
    assert not ck.evaluator_address and not ck.evaluator_datasets

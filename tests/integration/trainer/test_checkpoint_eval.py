"""A Ray training run whose checkpoints the trainer service sends to a real evaluator service.

Both services are real processes (`cotdistill serve trainer` with local Ray, `cotdistill serve
evaluator`); the evaluator loads each checkpoint with transformers and answers the registry's
synthetic_last_letters questions. The EvaluationEvent must arrive in WatchRun.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import grpc

from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc
from tests.integration.conftest import ServiceProcess, grpc_serving, wait_until
from tests.integration.trainer.conftest import TrainerUnderTest

WATCH_TIMEOUT_S = 150


def test_checkpoints_are_evaluated_by_the_evaluator_service(
    trainer: TrainerUnderTest, task: dict[str, Path], run_service: Callable[..., ServiceProcess]
) -> None:
    evaluator = run_service("evaluator", {"COTDISTILL_EVALUATOR_TORCH_THREADS": "1"})
    wait_until(lambda: grpc_serving(evaluator.address), 60, "evaluator SERVING", evaluator)
    # The trainer's port opens before Ray is up; it reports SERVING once Ray is (eager start).
    wait_until(lambda: grpc_serving(trainer.address), 300, "trainer SERVING", trainer.service)
    spec = trainer_pb2.RunSpec(
        name="checkpoint-eval",
        student=trainer_pb2.StudentSpec(model=str(task["student"])),
        data=trainer_pb2.DataSpec(train_paths=[str(task["train"])], format="ft_cot", max_seq_len=64),
        hyperparameters=trainer_pb2.Hyperparameters(
            learning_rate=3e-3, max_steps=2, batch_size=4, warmup_steps=0, seed=1
        ),
        scaling=trainer_pb2.ScalingSpec(num_workers=1, cpus_per_worker=1),
        checkpoints=trainer_pb2.CheckpointSpec(
            interval_steps=2,
            evaluator_address=evaluator.address,
            evaluator_datasets=["synthetic_last_letters:test"],
            evaluator_limit=5,
        ),
    )
    with grpc.insecure_channel(trainer.address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        run = stub.StartRun(trainer_pb2.StartRunRequest(spec=spec)).run
        call = stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id), timeout=WATCH_TIMEOUT_S)
        events = [r.event for r in call]
    messages = [e.message for e in events if e.HasField("message")]
    assert events[-1].state.state == trainer_pb2.RUN_STATE_SUCCEEDED, messages
    evaluations = [e.evaluation for e in events if e.HasField("evaluation")]
    assert [e.step for e in evaluations] == [2], (messages, evaluator.log()[-3000:])
    (accuracy,) = evaluations[0].metrics.values()
    assert list(evaluations[0].metrics) == ["synthetic_last_letters/accuracy"] and 0.0 <= accuracy <= 1.0
    # The evaluator saved the result under the checkpoint's step, tagged with the run.
    saved = [json.loads(p.read_text()) for p in (evaluator.log_path.parent / "evaluator-artifacts").rglob("*.json")]
    assert any(r.get("step") == 2 and r.get("tags", {}).get("run") == "checkpoint-eval" for r in saved), saved

"""Pieces of the Ray Train runner that need no Ray runtime: failure reasons, step events."""

from __future__ import annotations

import math
import pickle

from cotdistill.common.errors import InvalidArgument
from cotdistill.trainer.events import step_event, to_proto
from cotdistill.trainer.ray_runner import WorkerError, _failure_reason


def test_worker_errors_survive_pickling_and_read_as_one_line() -> None:
    from ray.train.v2.api.exceptions import WorkerGroupError

    original = InvalidArgument("data", "train.jsonl:2: invalid JSON")
    sent = pickle.loads(pickle.dumps(WorkerError(f"{type(original).__name__}: {original}")))
    reason = _failure_reason(WorkerGroupError("worker errors", {1: RuntimeError("x\nboom"), 0: sent}))
    assert reason == "worker 0 failed: InvalidArgument: data: train.jsonl:2: invalid JSON"
    assert _failure_reason(WorkerGroupError("w", {0: RuntimeError("trace\nlast: boom")})).endswith("last: boom")


def test_step_event_takes_loss_parts_from_the_recipes_metrics() -> None:
    event = step_event(3, 10, {"loss": 1.5, "sft": 1.0, "kd": 0.5, "learning_rate": 1e-3, "grad_norm": 2.0})
    assert event["loss_parts"] == {"sft": 1.0, "kd": 0.5}
    assert (event["learning_rate"], event["grad_norm"], event["step"], event["total_steps"]) == (1e-3, 2.0, 3, 10)
    assert math.isnan(step_event(1, 1, {})["loss"])
    # On-policy figures are not parts of the loss: they travel in StepEvent.metrics.
    on = step_event(4, 10, {"loss": 0.7, "sft": 0.2, "on_policy_fraction": 0.5, "teacher_score_latency_s": 0.1})
    assert on["loss_parts"] == {"sft": 0.2}
    assert on["metrics"] == {"on_policy_fraction": 0.5, "teacher_score_latency_s": 0.1}
    assert dict(to_proto("r", on).step.metrics) == {"on_policy_fraction": 0.5, "teacher_score_latency_s": 0.1}

"""Run events: what Ray Train workers send to the service, and their ``RunEvent`` protos.

Workers send small plain dicts (cheap to pickle through a Ray actor, no proto classes on the
wire); the service turns each into a :class:`trainer_pb2.RunEvent` and appends it to the run's
event log, which assigns the sequence number.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

from google.protobuf.timestamp_pb2 import Timestamp

from cotdistill.common import enums
from cotdistill.v1 import trainer_pb2

EventKind = Literal["step", "checkpoint", "evaluation", "message", "phase", "finished"]

TERMINAL_STATES = frozenset(
    {trainer_pb2.RUN_STATE_SUCCEEDED, trainer_pb2.RUN_STATE_FAILED, trainer_pb2.RUN_STATE_CANCELLED}
)
ACTIVE_STATES = frozenset({trainer_pb2.RUN_STATE_PENDING, trainer_pb2.RUN_STATE_RUNNING})


class WorkerEvent(TypedDict):
    """One event from a worker. ``kind`` picks which of the other keys are present.

    * step: step, total_steps, loss, loss_parts, learning_rate, tokens_per_second, grad_norm, tokens,
      metrics (figures that are not loss parts)
    * checkpoint: step, path, validation_loss (may be absent), is_best, duration_s, recovered (True:
      re-announced by a restarted worker group resuming from it, in case the first announcement
      died with the old group)
    * evaluation: step, metrics
    * message: text
    * phase: phase (starting_workers, loading_model, loading_data, first_step), text (detail)
    * finished: step, stopped (True when the loop ended early because a stop was requested)
    """

    kind: EventKind
    step: NotRequired[int]
    total_steps: NotRequired[int]
    loss: NotRequired[float]
    loss_parts: NotRequired[dict[str, float]]
    learning_rate: NotRequired[float]
    tokens_per_second: NotRequired[float]
    grad_norm: NotRequired[float]
    tokens: NotRequired[int]
    path: NotRequired[str]
    validation_loss: NotRequired[float | None]
    is_best: NotRequired[bool]
    duration_s: NotRequired[float]
    recovered: NotRequired[bool]
    metrics: NotRequired[dict[str, float]]
    text: NotRequired[str]
    phase: NotRequired[str]
    stopped: NotRequired[bool]


# Keys of a recipe's step metrics that have their own StepEvent field; every other numeric key
# ("sft", "kd", "loss_kd", ...) is a part of the loss.
_LR_KEYS = ("learning_rate", "lr")
_TPS_KEYS = ("tokens_per_second", "tokens_per_s")
_GRAD_KEYS = ("grad_norm",)
_TOKEN_KEYS = ("tokens", "num_tokens")
_NOT_PARTS = frozenset({"loss", "step", "epoch", *_LR_KEYS, *_TPS_KEYS, *_GRAD_KEYS, *_TOKEN_KEYS})


def _first(metrics: Mapping[str, Any], keys: tuple[str, ...], default: float = 0.0) -> float:
    for key in keys:
        if key in metrics and metrics[key] is not None:
            return float(metrics[key])
    return default


def _loss_part_name(key: str) -> str | None:
    if key in _NOT_PARTS:
        return None
    for prefix in ("loss/", "loss_", "loss."):
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix) :]
    return key


# Figures of the interval that are not parts of the loss (StepEvent.metrics): on-policy training's.
FIGURE_PREFIXES = ("on_policy", "teacher_")


def step_event(step: int, total_steps: int, metrics: Mapping[str, Any]) -> WorkerEvent:
    """A step event from a recipe's per-step metrics (loss, lr, tokens/s, grad norm, loss parts,
    and other figures: ``on_policy*`` and ``teacher_*`` keys)."""
    parts, figures = {}, {}
    for key, value in metrics.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if key.startswith(FIGURE_PREFIXES):
            figures[key] = float(value)
            continue
        name = _loss_part_name(key)
        if name is not None:
            parts[name] = float(value)
    return WorkerEvent(
        kind="step",
        step=int(step),
        total_steps=int(total_steps),
        loss=_first(metrics, ("loss",), math.nan),
        loss_parts=parts,
        metrics=figures,
        learning_rate=_first(metrics, _LR_KEYS),
        tokens_per_second=_first(metrics, _TPS_KEYS),
        grad_norm=_first(metrics, _GRAD_KEYS),
        tokens=int(_first(metrics, _TOKEN_KEYS)),
    )


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def to_proto(run_id: str, event: WorkerEvent) -> trainer_pb2.RunEvent:
    """The ``RunEvent`` of a worker event (sequence 0: the event log assigns it).

    Raises:
        ValueError: for a ``finished`` event, which only ends the run and is not logged.
    """
    out = trainer_pb2.RunEvent(run_id=run_id, time=now())
    kind = event["kind"]
    if kind == "step":
        out.step.CopyFrom(
            trainer_pb2.StepEvent(
                step=event.get("step", 0),
                total_steps=event.get("total_steps", 0),
                loss=event.get("loss", math.nan),
                loss_parts=event.get("loss_parts", {}),
                learning_rate=event.get("learning_rate", 0.0),
                tokens_per_second=event.get("tokens_per_second", 0.0),
                grad_norm=event.get("grad_norm", 0.0),
                metrics=event.get("metrics", {}),
            )
        )
    elif kind == "checkpoint":
        out.checkpoint.CopyFrom(checkpoint_info(event))
    elif kind == "evaluation":
        out.evaluation.CopyFrom(
            trainer_pb2.EvaluationEvent(step=event.get("step", 0), metrics=event.get("metrics", {}))
        )
    elif kind == "message":
        out.message = event.get("text", "")
    elif kind == "phase":
        out.phase.CopyFrom(trainer_pb2.PhaseEvent(name=event.get("phase", ""), detail=event.get("text", "")))
    else:
        raise ValueError(f"worker event kind {kind!r} is not logged")
    return out


def checkpoint_info(event: WorkerEvent) -> trainer_pb2.CheckpointInfo:
    info = trainer_pb2.CheckpointInfo(
        step=event.get("step", 0), path=event.get("path", ""), is_best=event.get("is_best", False)
    )
    loss = event.get("validation_loss")
    if loss is not None:
        info.validation_loss = float(loss)
    return info


def state_event(run_id: str, state: trainer_pb2.RunState, reason: str = "") -> trainer_pb2.RunEvent:
    return trainer_pb2.RunEvent(run_id=run_id, time=now(), state=trainer_pb2.StateEvent(state=state, reason=reason))


def phase_event(run_id: str, name: str, detail: str = "") -> trainer_pb2.RunEvent:
    """A PhaseEvent (``elapsed_s`` is filled in by the manager, which knows when the run began)."""
    return trainer_pb2.RunEvent(run_id=run_id, time=now(), phase=trainer_pb2.PhaseEvent(name=name, detail=detail))


def message_event(run_id: str, text: str) -> trainer_pb2.RunEvent:
    return trainer_pb2.RunEvent(run_id=run_id, time=now(), message=text)


def state_name(state: int) -> str:
    """``"running"`` for RUN_STATE_RUNNING: the label used in logs and metrics."""
    return enums.names(trainer_pb2.RunState).name(state, "unspecified")

"""Model selection (Fu et al. 2023): one number per candidate under a validation signal, then argmax.

:func:`choose` and :func:`signal_value` are pure functions over a table, so the choice is
testable without models. :func:`select` is the ``Select`` workflow around them: evaluate every
candidate on the validation datasets, fill the table, choose, write ``eval/selection.json``. The
servicer validates the request into a :class:`SelectionPlan` and maps the result to the proto.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import InvalidArgument
from cotdistill.evaluator.backends import GenerationParams
from cotdistill.evaluator.evaluation import DatasetTask, EvaluationOutcome, EvaluationRequest, ProgressEvent
from cotdistill.v1 import common_pb2

Signal = Literal["in_distribution", "out_of_distribution", "weighted", "validation_loss"]


@dataclass
class Row:
    """One candidate's figures. Accuracies are means over the group's datasets, in [0, 1]."""

    label: str
    step: int
    in_distribution: float | None = None
    out_of_distribution: float | None = None
    validation_loss: float | None = None
    signal_value: float = math.nan


def signal_value(row: Row, signal: Signal, id_weight: float = 0.5) -> float:
    """The value of ``signal`` for ``row``; ValueError naming what is missing.

    ``weighted`` is ``id_weight * ID + (1 - id_weight) * OOD``.
    """
    if signal == "validation_loss":
        if row.validation_loss is None:
            raise ValueError(f"candidate {row.label!r} has no validation_loss")
        return row.validation_loss
    if signal in ("in_distribution", "weighted") and row.in_distribution is None:
        raise ValueError(f"candidate {row.label!r} has no in-distribution accuracy (no in_distribution dataset)")
    if signal in ("out_of_distribution", "weighted") and row.out_of_distribution is None:
        raise ValueError(
            f"candidate {row.label!r} has no out-of-distribution accuracy (no out_of_distribution dataset)"
        )
    if signal == "in_distribution":
        return float(row.in_distribution)  # type: ignore[arg-type]
    if signal == "out_of_distribution":
        return float(row.out_of_distribution)  # type: ignore[arg-type]
    if not 0.0 <= id_weight <= 1.0:
        raise ValueError(f"id_weight must be in [0, 1], got {id_weight}")
    return id_weight * float(row.in_distribution) + (1 - id_weight) * float(row.out_of_distribution)  # type: ignore[arg-type]


def _other_group(row: Row, signal: Signal) -> float:
    """The tie-breaker: the accuracy of the group the signal does not look at (0 when absent)."""
    other = {"in_distribution": row.out_of_distribution, "out_of_distribution": row.in_distribution}.get(signal)
    return float(other) if other is not None else 0.0


def choose(rows: Sequence[Row], signal: Signal, id_weight: float = 0.5) -> int:
    """Fill each row's ``signal_value`` and return the index of the chosen row.

    Highest accuracy wins (lowest loss for ``validation_loss``). Ties on the signal go to the
    higher accuracy on the other group (ID for the OOD signal and back), then to the earlier
    (smaller-step) checkpoint, which is cheaper to have trained and less specialized. Without the
    middle key an OOD signal that is flat (say 0% at every checkpoint, as a tiny model scores on
    longer chains) would pick the first, barely trained checkpoint.
    """
    if not rows:
        raise ValueError("no candidates to choose from")
    for row in rows:
        row.signal_value = signal_value(row, signal, id_weight)
    sign = 1.0 if signal == "validation_loss" else -1.0
    return min(
        range(len(rows)),
        key=lambda i: (sign * rows[i].signal_value, -_other_group(rows[i], signal), rows[i].step, i),
    )


# ---- the Select workflow ------------------------------------------------------------------------

EvaluateModel = Callable[
    [EvaluationRequest, common_pb2.ModelRef, str], AsyncIterator[ProgressEvent | EvaluationOutcome]
]
"""Evaluate one model: (request, model, the request field naming it) -> progress, then the outcome."""


@dataclass(frozen=True)
class SelectionCandidate:
    """One checkpoint to choose from; ``field`` names it in errors (``candidates[i].model``)."""

    label: str
    step: int
    model: common_pb2.ModelRef
    field: str
    validation_loss: float | None = None


@dataclass(frozen=True)
class SelectionPlan:
    """A validated ``Select`` request. No ``tasks``: the signal needs no evaluation (validation loss)."""

    candidates: Sequence[SelectionCandidate]
    signal: Signal
    id_weight: float
    format: str
    tasks: Sequence[DatasetTask]
    params: GenerationParams
    output: ArtifactStore


@dataclass(frozen=True)
class Selection:
    """The chosen candidate, the table behind the choice and where it was written."""

    chosen: int
    rows: list[Row]
    table_path: str


async def select(plan: SelectionPlan, evaluate: EvaluateModel) -> Selection:
    """Evaluate each candidate (when the plan has datasets), choose under the signal, write the table.

    Raises:
        InvalidArgument: ``datasets`` when a candidate lacks the figure the signal needs.
    """
    rows: list[Row] = []
    for cand in plan.candidates:
        row = Row(label=cand.label, step=cand.step, validation_loss=cand.validation_loss)
        if plan.tasks:
            outcome = await _evaluate_candidate(plan, cand, evaluate)
            row.in_distribution = outcome.group_accuracy.get("in_distribution")
            row.out_of_distribution = outcome.group_accuracy.get("out_of_distribution")
            if not row.step:
                row.step = outcome.step
        rows.append(row)
    try:
        chosen = choose(rows, plan.signal, plan.id_weight)
    except ValueError as err:
        raise InvalidArgument("datasets", str(err)) from err
    plan.output.write_json(selection_table(plan, rows, chosen), "eval", "selection.json")
    return Selection(chosen, rows, plan.output.path("eval", "selection.json"))


async def _evaluate_candidate(
    plan: SelectionPlan, cand: SelectionCandidate, evaluate: EvaluateModel
) -> EvaluationOutcome:
    request = EvaluationRequest(
        label=cand.label,
        tasks=list(plan.tasks),
        formats=[plan.format],
        params=plan.params,
        output=plan.output,
        step=cand.step,
        tags={"role": "student"},
        result_dir="eval/selection",
    )
    outcome: EvaluationOutcome | None = None
    async for event in evaluate(request, cand.model, cand.field):
        if isinstance(event, EvaluationOutcome):
            outcome = event
    assert outcome is not None  # run_evaluation always ends with one
    return outcome


def selection_table(plan: SelectionPlan, rows: Sequence[Row], chosen: int) -> dict[str, Any]:
    """The JSON written to ``eval/selection.json`` (read by reports and ``make repro``)."""
    return {
        "signal": plan.signal,
        "id_weight": plan.id_weight,
        "format": plan.format,
        "chosen_index": chosen,
        "chosen": {
            "label": rows[chosen].label,
            "step": rows[chosen].step,
            "model": _model_json(plan.candidates[chosen].model),
        },
        "table": [
            {
                "label": r.label,
                "step": r.step,
                "signal_value": r.signal_value,
                "in_distribution_accuracy": r.in_distribution,
                "out_of_distribution_accuracy": r.out_of_distribution,
                "validation_loss": r.validation_loss,
                "model": _model_json(c.model),
            }
            for r, c in zip(rows, plan.candidates, strict=True)
        ],
    }


def _model_json(model: common_pb2.ModelRef) -> dict[str, str]:
    which = model.WhichOneof("source")
    if which == "openai":
        return {"openai": model.openai.base_url, "model": model.openai.model}
    return {which: getattr(model, which)} if which else {}

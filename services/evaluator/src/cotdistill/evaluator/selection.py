"""Model selection (Fu et al. 2023): one number per candidate under a validation signal, then argmax.

Pure functions over a table, so the choice is testable without models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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

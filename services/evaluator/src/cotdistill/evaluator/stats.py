"""Accuracy arithmetic: Wilson score intervals and majority voting (self-consistency)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

# Two-sided 95% normal quantile.
Z_95 = 1.959963984540054


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``correct / total``.

    Preferred to the normal ("Wald") interval because it stays inside [0, 1] and is not
    degenerate at 0% or 100%, which small dev sets hit often. ``total == 0`` gives (0, 1):
    nothing is known.
    """
    if total < 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total, got correct={correct}, total={total}")
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    z2 = z * z
    denom = 1 + z2 / total
    centre = (p + z2 / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / denom
    # Clamp rounding noise so that low <= p <= high holds exactly.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent non-empty answer; ties go to the answer seen first (maj@k).

    ``None`` (no answer could be extracted) never wins over a real answer.
    """
    real = [a for a in answers if a is not None and a != ""]
    if not real:
        return None
    counts = Counter(real)
    best = max(counts.values())
    return next(a for a in real if counts[a] == best)

"""Filtering of teacher samples before distillation, with counts of what was dropped and why.

Checks run in this order, and a sample is counted under the first reason it fails:
``empty_rationale``, ``truncated`` (finish_reason "length", unless ``drop_truncated=False``),
``no_answer`` (nothing extracted), ``incorrect`` (prediction != gold), ``too_short``/``too_long``
(rationale characters), ``duplicate`` (same example and same whitespace-normalized rationale as
an earlier kept sample). Truncation comes before correctness because a cut-off rationale is almost
always also wrong, and a teacher that loops until max_tokens should show as truncated, not as
merely incorrect; a sample with no extracted answer is ``no_answer`` even when the teacher marked
it incorrect.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cotdistill.common.tasks.extraction import answers_match
from cotdistill.common.tasks.specs import SPECS

REASONS = ("empty_rationale", "truncated", "no_answer", "incorrect", "too_short", "too_long", "duplicate")


class SampleLike(Protocol):
    """What filtering reads from a sample (``cotdistill.common.samples.SampleRecord`` fits)."""

    example_id: str
    rationale: str
    prediction: str | None
    gold: str | None
    correct: bool | None
    finish_reason: str


S = TypeVar("S", bound=SampleLike)


@dataclass
class FilterStats:
    """Counts of a filtering pass; ``to_dict()`` is what gets written beside the artifacts."""

    total: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    examples_total: int = 0
    examples_kept: int = 0  # examples with at least one kept sample
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "dropped_total": sum(self.dropped.values()),
            "kept_fraction": round(self.kept_fraction, 6),
            "examples_total": self.examples_total,
            "examples_kept": self.examples_kept,
            "settings": dict(self.settings),
        }

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write ``to_dict()`` as JSON atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def _is_correct(sample: SampleLike) -> bool:
    if sample.correct is not None:
        return bool(sample.correct)
    if sample.prediction is None or sample.gold is None:
        return False
    spec = SPECS.get(getattr(sample, "dataset", "") or "")
    if spec is not None:
        return answers_match(sample.prediction, sample.gold, spec.answer_type)
    return sample.prediction.strip().lower() == sample.gold.strip().lower()


def filter_samples(
    samples: Iterable[S],
    *,
    max_rationale_chars: int | None = None,
    min_rationale_chars: int = 1,
    dedupe: bool = True,
    require_correct: bool = True,
    drop_truncated: bool = True,
) -> tuple[list[S], FilterStats]:
    """Keep the samples that pass every check; returns (kept in input order, stats).

    ``correct`` decides correctness where set; otherwise ``prediction`` is compared with
    ``gold`` (numeric tolerance for number datasets).
    """
    if max_rationale_chars is not None and max_rationale_chars < 1:
        raise ValueError(f"max_rationale_chars: must be >= 1, got {max_rationale_chars}")
    stats = FilterStats(
        settings={
            "max_rationale_chars": max_rationale_chars,
            "min_rationale_chars": min_rationale_chars,
            "dedupe": dedupe,
            "require_correct": require_correct,
            "drop_truncated": drop_truncated,
        }
    )
    kept: list[S] = []
    seen: set[tuple[str, str]] = set()
    examples: set[str] = set()
    kept_examples: set[str] = set()
    dropped: Counter[str] = Counter()
    for s in samples:
        stats.total += 1
        examples.add(s.example_id)
        rationale = (s.rationale or "").strip()
        reason = None
        if not rationale:
            reason = "empty_rationale"
        elif drop_truncated and s.finish_reason == "length":
            reason = "truncated"
        elif require_correct and s.prediction is None and not s.correct:
            reason = "no_answer"
        elif require_correct and not _is_correct(s):
            reason = "incorrect"
        elif len(rationale) < min_rationale_chars:
            reason = "too_short"
        elif max_rationale_chars is not None and len(rationale) > max_rationale_chars:
            reason = "too_long"
        elif dedupe:
            key = (s.example_id, " ".join(rationale.split()))
            if key in seen:
                reason = "duplicate"
            else:
                seen.add(key)
        if reason is not None:
            dropped[reason] += 1
            continue
        kept.append(s)
        kept_examples.add(s.example_id)
    stats.kept = len(kept)
    stats.dropped.update(dropped)
    stats.examples_total = len(examples)
    stats.examples_kept = len(kept_examples)
    return kept, stats

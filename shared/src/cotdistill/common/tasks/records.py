"""The typed vocabulary of the task layer: one example record and one dataset description."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AnswerType = Literal["number", "choice", "yes_no", "text"]
ANSWER_TYPES: tuple[AnswerType, ...] = ("number", "choice", "yes_no", "text")


@dataclass(frozen=True)
class Example:
    """One question with its normalized gold answer.

    ``answer`` is normalized for its ``answer_type``: numbers without commas or units ("1234",
    "-3.5"), choice letters ("C"), "yes"/"no", or lowercased text. For choice questions the
    question text already lists the choices ("Answer choices: (A) x, (B) y.") and ``choices`` holds
    the choice texts in letter order. ``rationale`` is a human (or generated ground-truth) chain of
    thought where the source has one.
    """

    id: str
    question: str
    answer: str
    answer_type: AnswerType
    choices: tuple[str, ...] = ()
    rationale: str | None = None
    source: str = ""
    dataset: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset name stands for: its answer type, splits and where its records come from."""

    name: str
    description: str
    answer_type: AnswerType
    splits: tuple[str, ...]
    synthetic: bool = False
    source_files: tuple[str, ...] = ()
    choice_letters: str = ""  # e.g. "ABCDE" for choice datasets
    default_split: str = "test"
    # The role a run config gives it by default (``DatasetRef.group``): the synthetic 4-step/4-word/
    # 4-flip tasks are out of distribution for students trained on the 2(-3)-step ones.
    distribution: str = "in_distribution"
    split_sizes: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

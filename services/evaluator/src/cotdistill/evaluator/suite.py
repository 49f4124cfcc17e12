"""The narrow interface between the evaluation loop and the reasoning tasks.

:class:`TaskSuite` is what the loop needs from ``cotdistill.common.tasks``: validate names, load
examples, render a prompt, the stop strings of a format, and score completions. The production
implementation is :mod:`cotdistill.evaluator.task_suite`; tests may plant their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cotdistill.common.tasks.teacher_prompts import ChatPrompt

Prompt = str | ChatPrompt
"""Text sent as is, or a conversation for the model's chat template (``chat_*`` formats)."""


@dataclass(frozen=True)
class EvalExample:
    """One question to evaluate on, as the loop sees it."""

    id: str
    question: str
    gold: str
    # The task library's own record (rendering and answer matching need it); opaque here.
    record: Any = None


@dataclass(frozen=True)
class Scored:
    """One completion after answer extraction."""

    rationale: str
    answer: str | None


@dataclass(frozen=True)
class LoadedDataset:
    """Examples of one (dataset, split), plus what identifies their content for the cache."""

    name: str
    split: str
    examples: Sequence[EvalExample]
    # Changes when the data changes (a custom file's hash, or the registry name + version).
    fingerprint: str


class TaskSuite(Protocol):
    """What the evaluation loop needs from the task library."""

    def formats(self) -> Sequence[str]:
        """Names of the prompt formats the evaluator accepts."""

    def load(self, name: str, split: str, limit: int | None, *, field: str) -> LoadedDataset:
        """Examples of ``name``/``split``; InvalidArgument naming ``field`` when unknown."""

    def prompt(self, dataset: LoadedDataset, example: EvalExample, fmt: str) -> Prompt:
        """The prompt the model sees for ``example`` in format ``fmt`` (text, or a conversation the
        backend renders with the model's chat template)."""

    def stop(self, dataset: LoadedDataset, fmt: str) -> Sequence[str]:
        """Stop strings of format ``fmt``."""

    def score(self, dataset: LoadedDataset, example: EvalExample, fmt: str, completion: str) -> Scored:
        """Rationale and extracted answer of one completion."""

    def correct(self, dataset: LoadedDataset, example: EvalExample, answer: str | None) -> bool:
        """Whether ``answer`` matches the gold answer of ``example``."""

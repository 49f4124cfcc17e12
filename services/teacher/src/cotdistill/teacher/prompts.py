"""Dataset-aware prompts: render ``record_id`` prompts, answer triggers and answer extraction.

Thin glue over ``cotdistill.common.tasks`` (datasets, named prompt formats, answer extraction).
Examples of a (dataset, split) are loaded once and indexed by id, so a work unit naming record
ids costs a dict lookup per prompt.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from cotdistill.common.errors import InvalidArgument, NotFound

DEFAULT_SPLIT = "train"
DEFAULT_FORMAT = "zero_shot_cot"


def _tasks() -> Any:
    try:
        from cotdistill.common import tasks
    except ImportError as exc:  # the tasks package is part of cotdistill-shared
        raise NotFound(f"dataset support is not installed: {exc}") from exc
    return tasks


@functools.lru_cache(maxsize=32)
def _index(dataset: str, split: str, data_dir: str | None) -> dict[str, Any]:
    examples = _tasks().load_dataset(dataset, split, data_dir=data_dir)
    return {str(ex.id): ex for ex in examples}


class DatasetPrompts:
    """Prompt rendering and answer extraction for one named dataset.

    Raises ``InvalidArgument`` naming the request field for an unknown dataset, split, format or id.
    """

    def __init__(self, dataset: str, split: str = "", prompt_format: str = "", data_dir: str | None = None) -> None:
        tasks = _tasks()
        self.dataset = dataset
        self.split = split or DEFAULT_SPLIT
        self.prompt_format = prompt_format or DEFAULT_FORMAT
        self._data_dir = data_dir
        try:
            info = tasks.get_dataset_info(dataset)
        except (KeyError, NotFound) as exc:
            raise InvalidArgument("dataset", str(exc)) from exc
        if self.split not in info.splits:
            raise InvalidArgument("split", f"{dataset} has splits {', '.join(info.splits)}, not {self.split!r}")

    def render(self, record_ids: Sequence[tuple[int, str]]) -> dict[int, str]:
        """Prompt texts of ``(prompt index, record id)`` pairs, keyed by prompt index."""
        tasks = _tasks()
        out: dict[int, str] = {}
        for i, example in self._examples(record_ids).items():
            try:
                out[i] = tasks.render_teacher_prompt(self.prompt_format, example, data_dir=self._data_dir)
            except InvalidArgument as exc:
                raise InvalidArgument("prompt_format", str(exc)) from exc
        return out

    def chat(self, record_ids: Sequence[tuple[int, str]], system: str | None) -> dict[int, Any]:
        """Chat prompts (``tasks.ChatPrompt``) of ``(prompt index, record id)`` pairs."""
        tasks = _tasks()
        out: dict[int, Any] = {}
        for i, example in self._examples(record_ids).items():
            try:
                out[i] = tasks.teacher_chat_prompt(self.prompt_format, example, system=system, data_dir=self._data_dir)
            except InvalidArgument as exc:
                raise InvalidArgument("prompt_format", str(exc)) from exc
        return out

    def _examples(self, record_ids: Sequence[tuple[int, str]]) -> dict[int, Any]:
        index = _index(self.dataset, self.split, self._data_dir)
        out = {}
        for i, record_id in record_ids:
            example = index.get(record_id)
            if example is None:
                raise InvalidArgument(
                    f"prompts[{i}].record_id", f"no record {record_id!r} in {self.dataset}/{self.split}"
                )
            out[i] = example
        return out

    def trigger(self) -> str:
        """Zero-shot-CoT's stage-2 text appended after prompt + rationale (Kojima et al.: a space, then
        the dataset's trigger, as ``tasks.render_answer_prompt`` builds it)."""
        return " " + str(_tasks().answer_trigger(self.dataset))

    def extract(self, text: str | None, *, after_trigger: bool) -> str | None:
        """The normalized answer in ``text``; ``after_trigger`` for stage-2 answer text."""
        found = _tasks().extract_answer(text, self.dataset, after_trigger=after_trigger)
        return None if found is None else str(found)

"""Flan-style instruction templates for mixtures: several per task, zero- and few-shot, CoT and
answer-only.

The CoT templates are the first eight of FLAN v2's ``cot`` patterns
(``flan/v2/templates.py``, ``PATTERNS["cot"]``), verbatim. FLAN feeds inputs and targets to T5
separately; for a decoder-only student the completion here starts with a space unless the prompt
already ends with a newline. Answer-only templates are this project's own (FLAN's direct-answer
patterns are per source dataset). Few-shot variants (``*_fs_*``) prepend 3 exemplars from the
dataset's train split, each ``prompt + completion`` and a blank line, as FLAN's few-shot
collections join exemplars (sources: :mod:`cotdistill.common.tasks.exemplars`).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.tasks.errors import UnknownFormatError

# (prompt, completion) with {question}, {chain_of_thought}, {answer}: FLAN v2 PATTERNS["cot"][:8].
FLAN_COT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("{question} Let's think first. Chain of thought:", "{chain_of_thought}\nTherefore, the answer is {answer}."),
    ("{question} Think carefully first, then make a decision:", "{chain_of_thought} So, the answer is {answer}."),
    ("{question} Let's be accurate as possible.", "{chain_of_thought}\nThe answer: {answer}."),
    (
        "{question} Give me reasons, before answering the question",
        "{chain_of_thought} So the final answer is {answer}.",
    ),
    (
        "Lizzy: {question}.\nMe: Hmmm, let me think. I think this is the detailed solution:",
        "{chain_of_thought} Final answer: {answer}.",
    ),
    (
        "Please answer the following question by reasoning step-by-step. {question}. Step-by-step reasoning:",
        "{chain_of_thought} So the answer is {answer}.",
    ),
    ("{question} A step-by-step solution is:\n", "{chain_of_thought}\nThe final answer: {answer}."),
    ("Leo: {question}\nMei: OK, So, let's think first...\nMe:", "{chain_of_thought}\nThus, the answer is {answer}."),
)
FLAN_ANSWER_PATTERNS: tuple[tuple[str, str], ...] = (
    ("{question}", "The answer is {answer}."),
    ("Question: {question}\nAnswer:", "{answer}"),
    ("Answer the following question. {question}", "The final answer: {answer}."),
)
FEW_SHOT_K = 3


@dataclass(frozen=True)
class FlanTemplate:
    name: str
    prompt: str
    completion: str
    cot: bool
    few_shot: bool

    @property
    def description(self) -> str:
        kind = "CoT" if self.cot else "answer-only"
        shots = f"{FEW_SHOT_K}-shot" if self.few_shot else "zero-shot"
        return f"Flan {kind} {shots}: {self.prompt!r} -> {self.completion!r}"

    @property
    def stop(self) -> tuple[str, ...]:
        return ("\n\n",)


def _build() -> dict[str, FlanTemplate]:
    out = {}
    for i, (p, c) in enumerate(FLAN_COT_PATTERNS):
        out[f"flan_cot_{i}"] = FlanTemplate(f"flan_cot_{i}", p, c, True, False)
        out[f"flan_cot_fs_{i}"] = FlanTemplate(f"flan_cot_fs_{i}", p, c, True, True)
    for i, (p, c) in enumerate(FLAN_ANSWER_PATTERNS):
        out[f"flan_answer_{i}"] = FlanTemplate(f"flan_answer_{i}", p, c, False, False)
        out[f"flan_answer_fs_{i}"] = FlanTemplate(f"flan_answer_fs_{i}", p, c, False, True)
    return out


FLAN_TEMPLATES: dict[str, FlanTemplate] = _build()


def _template(name: str) -> FlanTemplate:
    if name not in FLAN_TEMPLATES:
        raise UnknownFormatError(name, list(FLAN_TEMPLATES))
    return FLAN_TEMPLATES[name]


def _sep(prompt: str) -> str:
    return "" if prompt.endswith("\n") else " "


def render_completion(name: str, rationale: str, answer: str) -> str:
    """The completion of template ``name``, with its leading separator."""
    t = _template(name)
    prompt_probe = t.prompt.format(question="")
    return _sep(prompt_probe) + t.completion.format(chain_of_thought=rationale, answer=answer)


def _zero_shot_prompt(t: FlanTemplate, question: str) -> str:
    return t.prompt.format(question=question)


@functools.lru_cache(maxsize=64)
def _exemplars(name: str, dataset: str, data_dir: str | None) -> str:
    from cotdistill.common.tasks.exemplars import answer_exemplars, cot_exemplars

    t = _template(name)
    if not dataset:
        raise InvalidArgument("dataset", f"few-shot format {name!r} needs a dataset to draw exemplars from")
    shots = cot_exemplars(dataset, FEW_SHOT_K, data_dir) if t.cot else answer_exemplars(dataset, FEW_SHOT_K, data_dir)
    return "".join(
        _zero_shot_prompt(t, e.question) + render_completion(name, e.rationale, e.answer) + "\n\n" for e in shots
    )


def render_prompt(
    name: str, question: str, *, dataset: str = "", data_dir: str | os.PathLike[str] | None = None
) -> str:
    """The prompt of template ``name``; few-shot templates need ``dataset`` for exemplars."""
    t = _template(name)
    prefix = _exemplars(name, dataset, str(data_dir) if data_dir is not None else None) if t.few_shot else ""
    return prefix + _zero_shot_prompt(t, question)


def parse_completion(name: str, text: str) -> tuple[str, str | None]:
    """(rationale, raw answer): the text after the last occurrence of the template's answer phrase."""
    t = _template(name)
    head = t.completion.split("{answer}")[0].replace("{chain_of_thought}", "").strip()
    if not head:  # answer-only template "{answer}"
        return "", text.strip().split("\n")[0].strip().rstrip(".").strip() or None
    matches = list(re.finditer(re.escape(head), text))
    if not matches:
        return text.strip(), None
    m = matches[-1]
    answer = text[m.end() :].strip().split("\n")[0].strip().rstrip(".").strip()
    return text[: m.start()].strip(), answer or None

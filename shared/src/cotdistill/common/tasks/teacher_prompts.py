"""Teacher prompt formats: the exact strings the papers sent to their teachers.

=================  ===========================================================================
format             prompt
=================  ===========================================================================
zero_shot_cot      ``Q: {q}\\nA: Let's think step by step.`` (Kojima et al. stage 1); stage 2 is
                   :func:`render_answer_prompt`: stage 1 + generated text + ``" " + trigger``
answer_only        ``Q: {q}\\nA: The answer (arabic numerals) is`` (Kojima et al. Zero-shot)
few_shot_cot       Wei et al.'s exemplars (Fine-tune-CoT's ``few_shot_cot_prompts.json``) +
                   ``\\nQ: {q}\\nA:``; datasets without one (synthetic, Tracking) get 8
                   exemplars of their own in the same layout
fu_complex         Fu et al.'s 8 complex exemplars + ``\\n\\nQuestion: {q}\\nLet's think step by step\\n``
fu_simple          Fu et al.'s 4 simple exemplars + ``\\n\\nQ: {q}\\nLet's think step by step\\n``
=================  ===========================================================================

Chat models get the same formats as conversations (:func:`teacher_chat_prompt`): the question is
the user turn, the papers' trigger opens the assistant turn (the model continues it), and few-shot
exemplars become earlier user/assistant turns. An instruct model prompted raw writes LaTeX and runs
past its token budget (Qwen2.5: 56 of 80 samples); through its template it answers in its trained
register and ends its turn.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.tasks.errors import UnknownFormatError
from cotdistill.common.tasks.exemplars import Exemplar, cot_exemplars, wei_exemplars
from cotdistill.common.tasks.prompt_files import (
    FEW_SHOT_KEYS,
    FU_COMPLEX_FILE,
    FU_SIMPLE_FILE,
    few_shot_prompt,
    text_file,
)
from cotdistill.common.tasks.records import Example
from cotdistill.common.tasks.specs import spec_for

COT_TRIGGER = "Let's think step by step."

TEACHER_FORMATS: dict[str, str] = {
    "zero_shot_cot": "Kojima et al. Zero-shot-CoT stage 1: Q: {q}\\nA: Let's think step by step.",
    "answer_only": "Kojima et al. Zero-shot (no rationale): Q: {q}\\nA: <answer trigger>",
    "few_shot_cot": "Wei et al. few-shot CoT exemplars per dataset (Fine-tune-CoT's file)",
    "fu_complex": "Fu et al. 8 complex GSM8K exemplars (prompt_complex.txt), Question:/Let's think step by step",
    "fu_simple": "Fu et al. 4 simple GSM8K exemplars (prompt_simple_4_cases.txt)",
}


def render_teacher_prompt(format: str, example: Example, *, data_dir: str | os.PathLike[str] | None = None) -> str:
    """The teacher prompt of ``example`` in ``format`` (see the module table)."""
    q = example.question
    if format == "zero_shot_cot":
        return f"Q: {q}\nA: {COT_TRIGGER}"
    if format == "answer_only":
        return f"Q: {q}\nA: {spec_for(example.dataset or example.answer_type).direct_trigger}"
    if format == "few_shot_cot":
        # Fine-tune-CoT's Formatter: prompt + "\nQ: {q}\nA:" (its exemplars are one newline apart).
        return f"{_few_shot_block(example.dataset, data_dir)}\nQ: {q}\nA:"
    if format == "fu_complex":
        return f"{text_file(FU_COMPLEX_FILE, data_dir)}\n\nQuestion: {q}\nLet's think step by step\n"
    if format == "fu_simple":
        return f"{text_file(FU_SIMPLE_FILE, data_dir)}\n\nQ: {q}\nLet's think step by step\n"
    raise UnknownFormatError(format, list(TEACHER_FORMATS))


# Where a teacher's generation should stop: the start of a hallucinated next exemplar. The papers
# used token limits instead (Kojima: 128 rationale + 32 answer tokens); these only trim the tail.
TEACHER_STOPS: dict[str, tuple[str, ...]] = {
    "zero_shot_cot": ("\nQ:",),
    "answer_only": ("\nQ:",),
    "few_shot_cot": ("\nQ:",),
    "fu_complex": ("\nQuestion:",),
    "fu_simple": ("\nQ:",),
}


def teacher_stop(format: str) -> list[str]:
    """Stop strings for a teacher prompt format (e.g. ``["\\nQ:"]`` for few_shot_cot)."""
    if format not in TEACHER_STOPS:
        raise UnknownFormatError(format, list(TEACHER_FORMATS))
    return list(TEACHER_STOPS[format])


def render_answer_prompt(example: Example, stage1_prompt: str, rationale: str) -> str:
    """Zero-shot-CoT stage 2: ``stage1_prompt + rationale + " " + trigger`` (Kojima et al. ``z2``).

    ``rationale`` is the teacher's stage-1 text as generated (leading space/newlines included).
    """
    return f"{stage1_prompt}{rationale} {spec_for(example.dataset or example.answer_type).trigger}"


def _few_shot_block(dataset: str, data_dir: str | os.PathLike[str] | None) -> str:
    """Wei et al.'s 8-shot prompt where the paper has one; else 8 exemplars in the same layout."""
    if dataset in FEW_SHOT_KEYS:
        return few_shot_prompt(dataset, data_dir)
    if not dataset:
        raise InvalidArgument("dataset", "few_shot_cot needs the example's dataset to pick exemplars")
    shots = cot_exemplars(dataset, 8, data_dir)
    return "\n".join(f"Q: {e.question}\nA: {e.rationale} The answer is {e.answer}." for e in shots)


@dataclass(frozen=True)
class ChatPrompt:
    """A teacher prompt as a conversation: ``messages`` (role, content) and an assistant ``prefix``.

    A non-empty ``prefix`` opens the assistant turn and the model continues it (the papers' trigger,
    e.g. "Let's think step by step."), so stage 2 of Zero-shot-CoT appends to the same turn.
    """

    messages: tuple[tuple[str, str], ...]
    prefix: str = ""

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


def teacher_chat_prompt(
    format: str,
    example: Example,
    *,
    system: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> ChatPrompt:
    """``format`` for a chat model (see the module docstring); ``system`` adds a system turn."""
    q = example.question
    head: list[tuple[str, str]] = [("system", system)] if system else []
    if format == "zero_shot_cot":
        return ChatPrompt((*head, ("user", q)), COT_TRIGGER)
    if format == "answer_only":
        return ChatPrompt((*head, ("user", q)), spec_for(example.dataset or example.answer_type).direct_trigger)
    if format == "few_shot_cot":
        shots = _few_shot_exemplars(example.dataset, data_dir)
        turns = [turn for e in shots for turn in (("user", e.question), ("assistant", _solved(e)))]
        return ChatPrompt((*head, *turns, ("user", q)))
    if format in ("fu_complex", "fu_simple"):
        text = text_file(FU_COMPLEX_FILE if format == "fu_complex" else FU_SIMPLE_FILE, data_dir)
        turns = [
            turn for question, answer in _fu_exemplars(text) for turn in (("user", question), ("assistant", answer))
        ]
        return ChatPrompt((*head, *turns, ("user", q)), "Let's think step by step\n")
    raise UnknownFormatError(format, list(TEACHER_FORMATS))


def _solved(e: Exemplar) -> str:
    return f"{e.rationale} The answer is {e.answer}."


def _few_shot_exemplars(dataset: str, data_dir: str | os.PathLike[str] | None) -> list[Exemplar]:
    if dataset in FEW_SHOT_KEYS:
        return wei_exemplars(dataset, data_dir)
    if not dataset:
        raise InvalidArgument("dataset", "few_shot_cot needs the example's dataset to pick exemplars")
    return list(cot_exemplars(dataset, 8, data_dir))


def _fu_exemplars(text: str) -> list[tuple[str, str]]:
    """Fu et al.'s files: blank-line separated "Q: ..." / "Question: ..." blocks whose answer
    starts at the "Let's think step by step" line."""
    out = []
    for block in re.split(r"\n\s*\n(?=Q: |Question: )", text.strip()):
        question, sep, answer = block.partition("\nLet's think step by step")
        if not sep:
            continue
        question = re.sub(r"^(Q|Question): ", "", question.strip())
        out.append((question, "Let's think step by step" + answer.rstrip()))
    return out

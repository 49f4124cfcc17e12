"""Student (fine-tuning and inference) formats: (prompt, completion) pairs and how to read them back.

=============  =================================  =============================================
format         prompt                             completion
=============  =================================  =============================================
ft_cot         ``{q} ###``                        `` {r} --> {a} END`` (Fine-tune-CoT)
ft_cot_t5      ``{q}``                            ``{r} --> {a}`` (Fine-tune-CoT, encoder-decoder)
answer_only    ``{q} ###``                        `` {a} END`` (Fine-tune-CoT vanilla fine-tuning)
fu_zs_cot      ``Q: {q}\\nLet's think step by step``  ``\\n{r}\\nThe answer is {a}``
fu_zs_answer   ``Q: {q} A:``                       `` The answer is {a}``
fu_ic_cot      4 CoT exemplars + fu_zs_cot prompt   as fu_zs_cot
fu_ic_answer   4 ``Q: ..\\nA: The answer is ..`` + ``Q: {q}\\nA:``  `` The answer is {a}``
flan_*         see :mod:`cotdistill.common.tasks.flan_templates`
=============  =================================  =============================================

Fu et al. (``src/data_utils.py``) build exactly these prompts and answers; their T5 keeps them
in separate encoder/decoder inputs, so the completions here begin with the newline or space that
makes ``prompt + completion`` read like their in-context exemplars for a decoder-only student.
In-context exemplars for math datasets are ``prompt_simple_4_cases.txt`` (answer-only variant:
the same 4 questions with "A: The answer is N"); other datasets take theirs from
:mod:`cotdistill.common.tasks.exemplars`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.tasks import flan_templates
from cotdistill.common.tasks.errors import UnknownFormatError
from cotdistill.common.tasks.exemplars import answer_exemplars, cot_exemplars
from cotdistill.common.tasks.prompt_files import FU_SIMPLE_FILE, text_file
from cotdistill.common.tasks.records import Example

FU_COT_CUE = "Let's think step by step"
_MATH = {"gsm8k", "svamp", "multiarith", "addsub", "singleeq", "asdiv"}


@dataclass(frozen=True)
class StudentFormat:
    """A student format: whether it carries a rationale and where generation stops."""

    name: str
    description: str
    uses_rationale: bool
    stop: tuple[str, ...] = ()


_BUILTIN: dict[str, StudentFormat] = {
    f.name: f
    for f in (
        StudentFormat("ft_cot", "Fine-tune-CoT: '{q} ###' -> ' {r} --> {a} END'", True, ("END",)),
        StudentFormat("ft_cot_t5", "Fine-tune-CoT for T5: '{q}' -> '{r} --> {a}'", True),
        StudentFormat("answer_only", "Fine-tune-CoT vanilla: '{q} ###' -> ' {a} END'", False, ("END",)),
        StudentFormat(
            "fu_zs_cot",
            "Fu et al. zero-shot CoT: 'Q: {q}\\nLet's think step by step' -> '\\n{r}\\nThe answer is {a}'",
            True,
            ("\n\nQ:",),
        ),
        StudentFormat(
            "fu_zs_answer", "Fu et al. zero-shot answer-only: 'Q: {q} A:' -> ' The answer is {a}'", False, ("\n",)
        ),
        StudentFormat("fu_ic_cot", "Fu et al. in-context CoT: 4 exemplars + zero-shot CoT prompt", True, ("\n\nQ:",)),
        StudentFormat("fu_ic_answer", "Fu et al. in-context answer-only: 4 exemplars + 'Q: {q}\\nA:'", False, ("\n",)),
    )
}


def student_formats() -> dict[str, StudentFormat]:
    """Every student format by name: the built-ins and the Flan templates."""
    out = dict(_BUILTIN)
    for name, t in flan_templates.FLAN_TEMPLATES.items():
        out[name] = StudentFormat(name, t.description, t.cot, t.stop)
    return out


def _get(format: str) -> StudentFormat:
    formats = student_formats()
    if format not in formats:
        raise UnknownFormatError(format, list(formats))
    return formats[format]


def student_stop(format: str) -> list[str]:
    """Stop strings for generation in ``format`` (e.g. ["END"]); empty means stop at EOS."""
    return list(_get(format).stop)


def _fu_exemplars(dataset: str, cot: bool, data_dir: str | os.PathLike[str] | None) -> str:
    """4 in-context exemplars, each ending with a blank line (Fu et al.'s sample_in_context_example)."""
    if dataset in _MATH or not dataset:
        text = text_file(FU_SIMPLE_FILE, data_dir)
        if cot:
            return text + "\n\n"
        return "".join(f"Q: {q}\nA: The answer is {a}\n\n" for q, a in _simple_cases(text))
    return _dataset_exemplars(dataset, cot, data_dir)


def _simple_cases(text: str) -> list[tuple[str, str]]:
    cases = []
    for block in text.split("\n\n"):
        lines = block.strip().split("\n")
        m = re.match(r"^The answer is (.+)$", lines[-1].strip())
        if lines and lines[0].startswith("Q: ") and m:
            cases.append((lines[0][3:], m.group(1).strip()))
    return cases


def _dataset_exemplars(dataset: str, cot: bool, data_dir: str | os.PathLike[str] | None) -> str:
    if cot:
        shots = cot_exemplars(dataset, 4, data_dir)
        return "".join(f"Q: {e.question}\n{FU_COT_CUE}\n{e.rationale}\nThe answer is {e.answer}\n\n" for e in shots)
    return "".join(f"Q: {e.question}\nA: The answer is {e.answer}\n\n" for e in answer_exemplars(dataset, 4, data_dir))


def student_prompt(
    format: str,
    question: str,
    *,
    dataset: str = "",
    data_dir: str | os.PathLike[str] | None = None,
) -> str:
    """The inference prompt of ``question`` in ``format`` (the prompt half of the training pair).

    ``dataset`` picks the in-context exemplars of the ``fu_ic_*`` formats (math: Fu et al.'s file).
    """
    spec = _get(format)
    if format in ("ft_cot", "answer_only"):
        return f"{question} ###"
    if format == "ft_cot_t5":
        return question
    if format == "fu_zs_cot":
        return f"Q: {question}\n{FU_COT_CUE}"
    if format == "fu_zs_answer":
        return f"Q: {question} A:"
    if format == "fu_ic_cot":
        return f"{_fu_exemplars(dataset, True, data_dir)}Q: {question}\n{FU_COT_CUE}"
    if format == "fu_ic_answer":
        return f"{_fu_exemplars(dataset, False, data_dir)}Q: {question}\nA:"
    return flan_templates.render_prompt(spec.name, question, dataset=dataset, data_dir=data_dir)


def render_student_pair(
    format: str,
    example: Example,
    rationale: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[str, str]:
    """(prompt, completion) to fine-tune on; ``rationale`` defaults to the example's own.

    Raises InvalidArgument("rationale") when a CoT format has no rationale to use.
    """
    spec = _get(format)
    a = example.answer
    r = (rationale if rationale is not None else example.rationale) or ""
    r = r.strip()
    if spec.uses_rationale and not r:
        raise InvalidArgument("rationale", f"format {format!r} needs a rationale; example {example.id!r} has none")
    prompt = student_prompt(format, example.question, dataset=example.dataset, data_dir=data_dir)
    if format == "ft_cot":
        return prompt, f" {r} --> {a} END"
    if format == "ft_cot_t5":
        return prompt, f"{r} --> {a}"
    if format == "answer_only":
        return prompt, f" {a} END"
    if format in ("fu_zs_cot", "fu_ic_cot"):
        return prompt, f"\n{r}\nThe answer is {a}"
    if format in ("fu_zs_answer", "fu_ic_answer"):
        return prompt, f" The answer is {a}"
    return prompt, flan_templates.render_completion(spec.name, r, a)


def parse_student_completion(format: str, text: str) -> tuple[str, str | None]:
    """(rationale, raw answer) from a student's generated text in ``format``.

    Text after the first stop string is ignored. The raw answer is the text of the answer slot
    (e.g. "8" or "(C)"); pass it to ``extract_answer(raw, dataset, after_trigger=True)`` to
    normalize. None when the completion has no answer slot.
    """
    spec = _get(format)
    for stop in spec.stop:
        if stop and stop in text:
            text = text[: text.index(stop)]
    if format in ("ft_cot", "ft_cot_t5"):
        if "-->" not in text:
            return text.strip(), None
        rationale, _, answer = text.rpartition("-->")
        return rationale.strip(), answer.strip() or None
    if format == "answer_only":
        return "", text.strip() or None
    if format.startswith("fu_"):
        matches = list(re.finditer(r"The answer is", text))
        if not matches:
            return text.strip(), None
        m = matches[-1]
        answer = text[m.end() :].strip().split("\n")[0].strip().rstrip(".").strip()
        return text[: m.start()].strip(), answer or None
    return flan_templates.parse_completion(spec.name, text)

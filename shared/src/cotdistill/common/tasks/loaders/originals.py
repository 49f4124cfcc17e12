"""Loaders of the 13 real datasets' original formats into :class:`Example` lists (full files).

Question texts follow Kojima et al.'s readers (``zero_shot_cot/utils.py``); choice questions list
their choices the way Fine-tune-CoT's unified files do (``Answer choices: (A) x, (B) y.``), so
split indices and prompts line up with that code base. Ids are ``<dataset>:<index>`` with the
index into the Fine-tune-CoT unified list where one exists.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from cotdistill.common.tasks.errors import MalformedDataError
from cotdistill.common.tasks.extraction import normalize_answer, normalize_number, split_gsm8k_answer
from cotdistill.common.tasks.loaders.readers import json_list, read_jsonl, read_tsv, require
from cotdistill.common.tasks.records import AnswerType, Example

LETTERS = "ABCDEFGHIJ"


def render_choices(choices: Sequence[str]) -> str:
    """``"Answer choices: (A) x, (B) y."`` (Fine-tune-CoT's unified format)."""
    return "Answer choices: " + ", ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices)) + "."


def _gold(path: str | os.PathLike[str], where: int | str, field: str, raw: object, kind: AnswerType) -> str:
    try:
        return normalize_answer(str(raw), kind)
    except ValueError as err:
        raise MalformedDataError(path, where, field, str(err)) from None


def gsm8k_jsonl(path: Path, dataset: str, id_prefix: str) -> list[Example]:
    """GSM8K JSONL (``question``, ``answer`` ending in ``#### N``); the solution becomes the rationale."""
    out = []
    for i, (line, rec) in enumerate(read_jsonl(path)):
        question = require(rec, "question", path, line).strip()
        try:
            rationale, answer = split_gsm8k_answer(require(rec, "answer", path, line))
        except ValueError as err:
            raise MalformedDataError(path, line, "answer", str(err)) from None
        out.append(Example(f"{id_prefix}:{i}", question, answer, "number", (), rationale, str(path), dataset))
    return out


def kojima_math_json(path: Path, dataset: str, question_fields: Sequence[str], answer_field: str) -> list[Example]:
    """AddSub/MultiArith/SingleEq (``sQuestion``, ``lSolutions``) and SVAMP (``Body``+``Question``, ``Answer``)."""
    out = []
    for i, rec in enumerate(json_list(path)):
        where = str(i)
        question = " ".join(require(rec, f, path, where).strip() for f in question_fields)
        raw = require(rec, answer_field, path, where, (list, int, float, str))
        if isinstance(raw, list):
            if not raw:
                raise MalformedDataError(path, where, answer_field, "empty solution list")
            raw = raw[0]
        out.append(
            Example(
                f"{dataset}:{i}",
                question,
                _gold(path, where, answer_field, raw, "number"),
                "number",
                source=str(path),
                dataset=dataset,
            )
        )
    return out


def examples_json(path: Path, dataset: str, answer_type: AnswerType) -> list[Example]:
    """Kojima's ``{"examples": [{question, answer}]}`` files (Coin Flip, Last Letters)."""
    out = []
    for i, rec in enumerate(json_list(path, "examples")):
        where = str(i)
        question = require(rec, "question", path, where)
        answer = _gold(path, where, "answer", require(rec, "answer", path, where), answer_type)
        out.append(Example(f"{dataset}:{i}", question, answer, answer_type, source=str(path), dataset=dataset))
    return out


def bigbench_choice(path: Path, dataset: str, suffix: str = "\nWhich choice is true?") -> list[Example]:
    """BIG-bench ``task.json`` with ``target_scores``; choices in ``target_scores`` order."""
    out = []
    for i, rec in enumerate(json_list(path, "examples")):
        where = str(i)
        text = require(rec, "input", path, where).strip()
        scores = require(rec, "target_scores", path, where, dict)
        # "orange ball." -> "orange ball": the list adds its own punctuation (as Fine-tune-CoT's files)
        choices = tuple(str(c).strip().removesuffix(".") for c in scores)
        winners = [j for j, v in enumerate(scores.values()) if v == 1]
        if len(winners) != 1:
            raise MalformedDataError(
                path, where, "target_scores", f"expected exactly one score of 1, got {len(winners)}"
            )
        question = f"{text}{suffix} {render_choices(choices)}"
        out.append(
            Example(f"{dataset}:{i}", question, LETTERS[winners[0]], "choice", choices, None, str(path), dataset)
        )
    return out


def bigbench_yes_no(path: Path, dataset: str) -> list[Example]:
    """StrategyQA's BIG-bench ``task.json``: ``target_scores`` {Yes, No}; ``target`` gives the rationale."""
    out = []
    for i, rec in enumerate(json_list(path, "examples")):
        where = str(i)
        question = require(rec, "input", path, where).strip()
        scores = require(rec, "target_scores", path, where, dict)
        if "Yes" not in scores:
            raise MalformedDataError(path, where, "target_scores", "missing 'Yes'")
        answer = "yes" if scores["Yes"] == 1 else "no"
        target = rec.get("target")
        rationale = None
        if isinstance(target, str):
            # "Yes. <explanation>" -> "<explanation>"
            rationale = re.sub(r"^(yes|no)\.\s*", "", target.strip(), flags=re.IGNORECASE) or None
        out.append(Example(f"{dataset}:{i}", question, answer, "yes_no", (), rationale, str(path), dataset))
    return out


def unified_choice_json(path: Path, dataset: str) -> list[Example]:
    """A Fine-tune-CoT unified list ``[{question, answer}]`` whose question ends with its choices."""
    out = []
    for i, rec in enumerate(json_list(path)):
        where = str(i)
        question = require(rec, "question", path, where)
        answer = _gold(path, where, "answer", require(rec, "answer", path, where), "choice")
        _, sep, tail = question.rpartition("Answer choices: ")
        if not sep:
            raise MalformedDataError(path, where, "question", "no 'Answer choices:' list")
        choices = tuple(c.strip() for c in re.split(r",?\s*\([A-J]\)\s*", tail.rstrip("."))[1:])
        if LETTERS.index(answer) >= len(choices):
            raise MalformedDataError(path, where, "answer", f"letter {answer} beyond {len(choices)} choices")
        out.append(
            Example(f"{dataset}:{i}", question, answer, "choice", choices, rec.get("rationale"), str(path), dataset)
        )
    return out


def aqua_jsonl(path: Path, dataset: str) -> list[Example]:
    """AQuA JSONL (``question``, ``options`` ["A)x", ...], ``rationale``, ``correct``)."""
    out = []
    for i, (line, rec) in enumerate(read_jsonl(path)):
        question = require(rec, "question", path, line).strip()
        options = require(rec, "options", path, line, list)
        choices = []
        for opt in options:
            m = re.match(r"^\s*\(?([A-J])\)\s*(.*)$", str(opt), flags=re.S)
            if not m:
                raise MalformedDataError(path, line, "options", f"option {opt!r} is not 'X)text'")
            choices.append(m.group(2).strip())
        answer = _gold(path, line, "correct", require(rec, "correct", path, line), "choice")
        rationale = rec.get("rationale") if isinstance(rec.get("rationale"), str) else None
        out.append(
            Example(
                f"{dataset}:{i}",
                f"{question} {render_choices(choices)}",
                answer,
                "choice",
                tuple(choices),
                rationale,
                str(path),
                dataset,
            )
        )
    return out


def csqa_jsonl(path: Path, dataset: str, id_offset: int = 0) -> list[Example]:
    """CommonsenseQA JSONL (``question.stem``, ``question.choices[label,text]``, ``answerKey``)."""
    out = []
    for i, (line, rec) in enumerate(read_jsonl(path)):
        q = require(rec, "question", path, line, dict)
        stem = require(q, "stem", path, line).strip()
        raw_choices = require(q, "choices", path, line, list)
        choices = tuple(require(c, "text", path, line).strip() for c in raw_choices)
        answer = _gold(path, line, "answerKey", require(rec, "answerKey", path, line), "choice")
        out.append(
            Example(
                f"{dataset}:{id_offset + i}",
                f"{stem} {render_choices(choices)}",
                answer,
                "choice",
                choices,
                None,
                str(path),
                dataset,
            )
        )
    return out


def flan_tsv(path: Path, dataset: str, answer_type: AnswerType, id_prefix: str) -> list[Example]:
    """Flan CoT TSV (question, answer, chain of thought; no header), rationales kept.

    Choice questions come as ``...\\nOptions:\\n(A) x`` (AQuA) or ``...\\nOptions:\\n- x`` (ECQA, whose
    answer is the option text); both are re-rendered as lettered choices.
    """
    out = []
    for i, (line, (question, answer, cot)) in enumerate(read_tsv(path, 3)):
        choices: tuple[str, ...] = ()
        if answer_type == "choice":
            head, sep, opts = question.partition("\nOptions:\n")
            if not sep:
                raise MalformedDataError(path, line, "question", "no 'Options:' list")
            items = [o for o in opts.split("\n") if o.strip()]
            if all(o.startswith("- ") for o in items):
                choices = tuple(o[2:].strip() for o in items)
                if answer.strip() not in choices:
                    raise MalformedDataError(path, line, "answer", f"{answer!r} is not one of the options")
                gold = LETTERS[choices.index(answer.strip())]
            else:
                parsed = [re.match(r"^\(([A-J])\)\s*(.*)$", o) for o in items]
                if not all(parsed):
                    raise MalformedDataError(path, line, "question", "options are neither '(X) text' nor '- text'")
                choices = tuple(m.group(2).strip() for m in parsed if m)
                gold = _gold(path, line, "answer", answer, "choice")
            question = f"{head.strip()} {render_choices(choices)}"
        else:
            gold = _gold(path, line, "answer", answer, answer_type)
        out.append(
            Example(
                f"{id_prefix}:{i}",
                question.strip(),
                gold,
                answer_type,
                choices,
                cot.strip() or None,
                str(path),
                dataset,
            )
        )
    return out


def asdiv_xml(path: Path, dataset: str) -> tuple[list[Example], int]:
    """ASDiv XML problems whose answer is one number (``"9 (apples)"`` -> "9").

    Returns (examples, skipped): problems with ratio, multi-value or word answers are skipped,
    since a number-extraction metric cannot score them.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise MalformedDataError(path, err.position[0], None, f"invalid XML: {err}") from None
    except FileNotFoundError:
        raise MalformedDataError(path, None, None, "file not found") from None
    out: list[Example] = []
    skipped = 0
    for problem in root.iter("Problem"):
        pid = problem.get("ID") or f"#{len(out) + skipped}"
        fields = {}
        for name in ("Body", "Question", "Answer"):
            node = problem.find(name)
            if node is None or node.text is None:
                raise MalformedDataError(path, pid, name, "missing element")
            fields[name] = node.text.strip()
        raw = re.sub(r"\s*\(.*\)\s*$", "", fields["Answer"]).strip()
        number = normalize_number(raw) if re.fullmatch(r"-?[\d,]*\.?\d+", raw) else None
        if number is None:
            skipped += 1
            continue
        formula = problem.find("Formula")
        out.append(
            Example(
                f"{dataset}:{pid}",
                f"{fields['Body']} {fields['Question']}",
                number,
                "number",
                (),
                formula.text.strip() if formula is not None and formula.text else None,
                str(path),
                dataset,
            )
        )
    return out, skipped

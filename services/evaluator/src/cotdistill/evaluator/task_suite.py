"""The production :class:`~cotdistill.evaluator.suite.TaskSuite`: ``cotdistill.common.tasks``.

Datasets are registry names (``cotdistill data list``) or paths to files:

* ``*.json`` holding ``{"examples": [{"input": ..., "target": ...}]}`` (BIG-Bench-Hard style, the
  generic-ability set); the answer type is inferred from the targets: all ``(A)``-style letters
  -> choice, all yes/no/true/false -> yes_no, all numbers -> number, else text;
* ``*.jsonl`` with one ``{"question", "answer"}`` object per line (optional ``id`` and
  ``answer_type``).

Formats are the student formats of the task library (``ft_cot``, ``answer_only``, ``fu_*``,
``flan_*``: the student's training formats) plus the teacher prompt formats that are not also
student names (``zero_shot_cot``, ``few_shot_cot``, ``fu_complex``, ``fu_simple``) and
``kojima_answer_only`` for the teacher's answer-only prompt, and ``chat_<teacher format>``
(``chat_zero_shot_cot``, ...): the same prompt as a conversation through the model's own chat
template, which is how an instruct model (an untrained real student, a chat teacher) is asked
fairly. Teacher formats are evaluated in one stage: the answer is read after the last "the answer
is" phrase, else the last candidate (Kojima et al.'s fallback), without the second answer-trigger
call.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

from cotdistill.common.errors import InvalidArgument, NotFound
from cotdistill.common.tasks import (
    DataDirNotFound,
    Example,
    UnknownSplitError,
    answers_match,
    extract_answer,
    list_formats,
    load_dataset,
    normalize_answer,
    parse_student_completion,
    render_teacher_prompt,
    student_prompt,
    student_stop,
    teacher_chat_prompt,
)
from cotdistill.evaluator.suite import EvalExample, LoadedDataset, Prompt, Scored

KOJIMA_ANSWER_ONLY = "kojima_answer_only"
CHAT_PREFIX = "chat_"
# Where one-stage teacher generations end: the next exemplar-style question.
TEACHER_STOPS: dict[str, tuple[str, ...]] = {
    "zero_shot_cot": ("\n\nQ:", "\nQ:"),
    "few_shot_cot": ("\n\nQ:",),
    "fu_complex": ("\n\nQuestion:",),
    "fu_simple": ("\n\nQ:",),
    KOJIMA_ANSWER_ONLY: ("\n",),
}
_CHOICE = re.compile(r"^\(?([A-Z])\)?$")
_NUMBER = re.compile(r"^-?[\d,]*\.?\d+$")


def _spec_key(example: Example) -> str:
    """The key ``extract_answer`` understands for this example: its dataset, or its answer type."""
    return example.dataset or example.answer_type


class RegistrySuite:
    """Datasets, formats and answer extraction of ``cotdistill.common.tasks``."""

    def __init__(self) -> None:
        student = [f.name for f in list_formats("student")]
        teacher = [f.name for f in list_formats("teacher") if f.name not in student]
        self._student = set(student)
        self._chat = {f"{CHAT_PREFIX}{name}": name for name in teacher}
        self._formats = [*student, *teacher, KOJIMA_ANSWER_ONLY, *self._chat]

    def formats(self) -> Sequence[str]:
        return self._formats

    # -- datasets -----------------------------------------------------------------------------

    def load(self, name: str, split: str, limit: int | None, *, field: str) -> LoadedDataset:
        path = Path(name)
        if name.endswith((".json", ".jsonl")) or path.is_file():
            if not path.is_file():
                raise InvalidArgument(field, f"dataset file {name} does not exist (on the evaluator's file system)")
            examples = _load_file(path, field)
            fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()
            display = path.stem
        else:
            try:
                examples = load_dataset(name, split, limit=None)
            except DataDirNotFound:
                raise  # the service's data folder is missing: NOT_FOUND, not the caller's fault
            except UnknownSplitError as err:
                raise InvalidArgument(field.removesuffix(".name") + ".split", str(err)) from err
            except (NotFound, KeyError) as err:
                # An unknown name is a bad request here, not a missing resource.
                raise InvalidArgument(field, str(err).strip("'\"")) from err
            fingerprint = f"registry:{name}"
            display = name
        if limit:
            examples = examples[:limit]
        items = [EvalExample(e.id, e.question, e.answer, e) for e in examples]
        return LoadedDataset(display, split, items, fingerprint)

    # -- prompts and answers ------------------------------------------------------------------

    def prompt(self, dataset: LoadedDataset, example: EvalExample, fmt: str) -> Prompt:
        record: Example = example.record
        if fmt in self._chat:
            return teacher_chat_prompt(self._chat[fmt], record)
        if fmt in self._student:
            return student_prompt(fmt, record.question, dataset=record.dataset)
        if fmt == KOJIMA_ANSWER_ONLY:
            return render_teacher_prompt("answer_only", record)
        return render_teacher_prompt(fmt, record)

    def stop(self, dataset: LoadedDataset, fmt: str) -> Sequence[str]:
        if fmt in self._student:
            return student_stop(fmt)
        return TEACHER_STOPS.get(self._chat.get(fmt, fmt), ())

    def score(self, dataset: LoadedDataset, example: EvalExample, fmt: str, completion: str) -> Scored:
        record: Example = example.record
        key = _spec_key(record)
        if fmt in self._student:
            rationale, raw = parse_student_completion(fmt, completion)
            answer = extract_answer(raw, key, after_trigger=True) if raw else None
            return Scored(rationale, answer)
        if fmt == KOJIMA_ANSWER_ONLY:
            return Scored("", extract_answer(completion, key, after_trigger=True))
        return Scored(completion.strip(), extract_answer(completion, key))

    def correct(self, dataset: LoadedDataset, example: EvalExample, answer: str | None) -> bool:
        record: Example = example.record
        return answers_match(answer, record.answer, record.answer_type)


def _infer_type(targets: Sequence[str]) -> str:
    """The answer type key of a file's gold answers (see the module docstring)."""
    clean = [t.strip() for t in targets]
    letters = [m.group(1) for t in clean if (m := _CHOICE.match(t))]
    if clean and len(letters) == len(clean) and any(t.startswith("(") for t in clean):
        top = max(letters)
        return "choice:" + "".join(chr(c) for c in range(ord("A"), max(ord(top), ord("B")) + 1))
    if clean and all(t.lower().strip(".") in ("yes", "no", "true", "false") for t in clean):
        return "yes_no"
    if clean and all(_NUMBER.match(t) for t in clean):
        return "number"
    return "text"


def _load_file(path: Path, field: str) -> list[Example]:
    """Examples of a BIG-Bench-Hard-style ``.json`` or a ``{"question","answer"}`` ``.jsonl`` file."""
    rows: list[tuple[str, str, str, str | None]] = []  # (id, question, answer, answer_type)
    if path.suffix == ".jsonl":
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InvalidArgument(field, f"{path}:{line_no}: not JSON ({err.msg})") from err
            for key in ("question", "answer"):
                if not isinstance(obj, dict) or key not in obj:
                    raise InvalidArgument(field, f"{path}:{line_no}: missing field {key!r}")
            rows.append(
                (
                    str(obj.get("id", f"{path.stem}-{line_no}")),
                    str(obj["question"]),
                    str(obj["answer"]),
                    obj.get("answer_type"),
                )
            )
    else:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise InvalidArgument(field, f"{path}:{err.lineno}: not JSON ({err.msg})") from err
        examples = data.get("examples") if isinstance(data, dict) else None
        if not isinstance(examples, list):
            raise InvalidArgument(field, f'{path}: expected {{"examples": [{{"input", "target"}}, ...]}}')
        for i, obj in enumerate(examples):
            for key in ("input", "target"):
                if not isinstance(obj, dict) or key not in obj:
                    raise InvalidArgument(field, f"{path}[examples.{i}]: missing field {key!r}")
            rows.append((f"{path.stem}-{i}", str(obj["input"]), str(obj["target"]), None))
    inferred = _infer_type([r[2] for r in rows])
    out = []
    for i, (ident, question, answer, declared) in enumerate(rows):
        key = declared or inferred
        kind = key.split(":", 1)[0]
        try:
            gold = normalize_answer(answer, kind)  # type: ignore[arg-type]
        except ValueError as err:
            raise InvalidArgument(field, f"{path}[{i}]: answer {answer!r}: {err}") from err
        # dataset carries the answer-spec key ("choice:ABCD", "number", ...) for extract_answer.
        out.append(Example(ident, question, gold, kind, dataset=key if kind == "choice" else "", source=str(path)))  # type: ignore[arg-type]
    return out

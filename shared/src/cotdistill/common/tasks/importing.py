"""Import teacher completions generated elsewhere (JSONL) as sample records, so they can be
filtered and trained on like our own.

One JSON object per line:

================  =========  =======================================================
field             required   meaning
================  =========  =======================================================
example_id | id   one of     id of a record of ``dataset``/``split`` (``Example.id``)
question          the two    or the question text, matched exactly (after strip)
rationale         yes        the teacher's chain of thought (``completion`` accepted)
answer            no         the teacher's answer text; else extracted from the rationale
prompt            no         the prompt used; default: the Zero-shot-CoT prompt
finish_reason     no         "stop" (default), "length" or "abort"
token_ids         no         generated token ids (T)
token_logprobs    no         logprob of each generated token (T)
top_ids           no         T lists of k candidate token ids
top_logprobs      no         T lists of k candidate logprobs
================  =========  =======================================================
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from cotdistill.common.samples import SampleRecord
from cotdistill.common.tasks.errors import MalformedDataError
from cotdistill.common.tasks.extraction import answers_match, extract_answer
from cotdistill.common.tasks.loaders.readers import _read_jsonl
from cotdistill.common.tasks.records import Example
from cotdistill.common.tasks.registry import load_dataset
from cotdistill.common.tasks.teacher_prompts import render_teacher_prompt


def _numbers(value: Any, path: Path, line: int, field: str, kind: type) -> list[Any]:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise MalformedDataError(path, line, field, "expected a list of numbers")
    if kind is int and not all(isinstance(v, int) for v in value):
        raise MalformedDataError(path, line, field, "expected integer token ids")
    return list(value)


def _top_k(rec: dict[str, Any], path: Path, line: int, t: int) -> tuple[int, list[int], list[float]]:
    ids, lps = rec.get("top_ids"), rec.get("top_logprobs")
    if ids is None and lps is None:
        return 0, [], []
    if not isinstance(ids, list) or not isinstance(lps, list):
        raise MalformedDataError(
            path,
            line,
            "top_ids" if not isinstance(ids, list) else "top_logprobs",
            "top_ids and top_logprobs come together, as lists of per-token lists (token ids, not strings)",
        )
    if len(ids) != t or len(lps) != t:
        raise MalformedDataError(
            path, line, "top_ids", f"need one entry per generated token ({t}), got {len(ids)}/{len(lps)}"
        )
    k = len(ids[0]) if ids else 0
    flat_ids: list[int] = []
    flat_lps: list[float] = []
    for i, (row_ids, row_lps) in enumerate(zip(ids, lps, strict=True)):
        row_ids = _numbers(row_ids, path, line, f"top_ids[{i}]", int)
        row_lps = _numbers(row_lps, path, line, f"top_logprobs[{i}]", float)
        if len(row_ids) != k or len(row_lps) != k:
            raise MalformedDataError(path, line, f"top_ids[{i}]", f"every token needs k={k} candidates")
        flat_ids += row_ids
        flat_lps += [float(v) for v in row_lps]
    return k, flat_ids, flat_lps


def import_completions(
    path: str | os.PathLike[str],
    dataset: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[SampleRecord]:
    """Sample records for every line of ``path``; errors name file:line and the field.

    ``sample_index`` counts the samples of each example in file order; ``prediction`` and
    ``correct`` are filled with this project's extraction.
    """
    path = Path(path)
    examples = load_dataset(dataset, split, data_dir=data_dir)
    by_id = {e.id: e for e in examples}
    by_question = {e.question.strip(): e for e in examples}
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MalformedDataError(path, None, None, "file not found") from None
    counts: Counter[str] = Counter()
    out = []
    for line, rec in _read_jsonl(str(path), st.st_mtime, st.st_size):
        ex_id = rec.get("example_id", rec.get("id"))
        example: Example | None
        if ex_id is not None:
            if str(ex_id) not in by_id:
                raise MalformedDataError(path, line, "example_id", f"{ex_id!r} is not in {dataset}/{split}")
            example = by_id[str(ex_id)]
        elif isinstance(rec.get("question"), str):
            example = by_question.get(rec["question"].strip())
            if example is None:
                raise MalformedDataError(path, line, "question", f"no {dataset}/{split} question matches")
        else:
            raise MalformedDataError(path, line, "example_id", "need example_id (or id) or question")
        rationale = rec.get("rationale", rec.get("completion"))
        if not isinstance(rationale, str):
            raise MalformedDataError(path, line, "rationale", "missing or not a string")
        answer = rec.get("answer")
        if answer is not None and not isinstance(answer, (str, int, float)):
            raise MalformedDataError(path, line, "answer", "expected a string or number")
        prediction = (
            extract_answer(str(answer), dataset, after_trigger=True)
            if answer is not None
            else extract_answer(rationale, dataset)
        )
        token_ids = _numbers(rec.get("token_ids", []), path, line, "token_ids", int)
        token_lps = _numbers(rec.get("token_logprobs", []), path, line, "token_logprobs", float)
        if token_lps and len(token_lps) != len(token_ids):
            raise MalformedDataError(
                path, line, "token_logprobs", f"{len(token_lps)} entries for {len(token_ids)} tokens"
            )
        k, top_ids, top_lps = _top_k(rec, path, line, len(token_ids))
        finish = rec.get("finish_reason", "stop")
        if finish not in ("stop", "length", "abort"):
            raise MalformedDataError(path, line, "finish_reason", f"{finish!r} is not stop, length or abort")
        prompt = rec.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise MalformedDataError(path, line, "prompt", "expected a string")
        out.append(
            SampleRecord(
                example_id=example.id,
                sample_index=counts[example.id],
                prompt=prompt if prompt is not None else render_teacher_prompt("zero_shot_cot", example),
                rationale=rationale,
                dataset=dataset,
                split=split,
                answer_text=None if answer is None else str(answer),
                prediction=prediction,
                gold=example.answer,
                correct=answers_match(prediction, example.answer, example.answer_type),
                finish_reason=finish,
                token_ids=token_ids,
                token_logprobs=[float(v) for v in token_lps],
                top_k=k,
                top_ids=top_ids,
                top_logprobs=top_lps,
            )
        )
        counts[example.id] += 1
    return out

"""``cotdistill align TEACHER STUDENT TEXT``: how cross-tokenizer KD sees a text, as JSON.

    cotdistill align qwen2.5-coder-0.5b-instruct gemma-3-270m "5 + 12 = 17."
    cotdistill align ./teacher-dir ./student-dir - < rationale.txt
    cotdistill align qwen2.5-coder-0.5b-instruct smollm2-135m-instruct " 3 + 4 = 7." \\
        --student-text " 3 + 4 = 7. --> 7 END"          # the trainer's case: a rendered completion

Models are registry names or paths (only tokenizers are needed: a registry model is pulled
tokenizer-only). The output lists every aligned (teacher, student) token pair, which student tokens
take the teacher's top-k (``kd``), where the vocabulary map sends each teacher token, and the
coverage: the tool for when cross-tokenizer KD goes silently wrong.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cotdistill.common.errors import InvalidArgument


def _tokenizer(ref: str, cache_dir: Path | None, field: str) -> tuple[Path, Any]:
    from transformers import AutoTokenizer

    from cotdistill.common.models import resolve_model

    path = resolve_model(ref, need_weights=False, cache_dir=cache_dir)
    try:
        return path, AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise InvalidArgument(field, f"{ref}: no loadable tokenizer in {path}: {err}") from None


def align(
    teacher: Annotated[str, typer.Argument(help="Teacher model: registry name or path.")],
    student: Annotated[str, typer.Argument(help="Student model: registry name or path.")],
    text: Annotated[str, typer.Argument(help="Text the teacher's tokens spell ('-' reads stdin).")],
    student_text: Annotated[
        str | None, typer.Option(help="Text the student's tokens spell (default: TEXT), e.g. a rendered completion.")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="Models cache (default: $COTDISTILL_MODELS_CACHE or ~/.cache/cotdistill/models)."
        ),
    ] = None,
) -> None:
    """Align TEXT as the teacher and the student tokenize it; print pairs and coverage as JSON."""
    if text == "-":
        text = sys.stdin.read()
    if not text:
        raise InvalidArgument("text", "empty; give the text to align (or '-' to read it from stdin)")
    from cotdistill.common.alignment import alignment_report

    t_path, t_tok = _tokenizer(teacher, cache_dir, "teacher")
    s_path, s_tok = _tokenizer(student, cache_dir, "student")
    report = alignment_report(t_tok, s_tok, text, student_text)
    report["teacher"] = {"model": teacher, "path": str(t_path), **report["teacher"]}
    report["student"] = {"model": student, "path": str(s_path), **report["student"]}
    sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

"""All named formats in one list: teacher prompts and student (prompt, completion) formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cotdistill.common.tasks.student_formats import student_formats
from cotdistill.common.tasks.teacher_prompts import TEACHER_FORMATS, TEACHER_STOPS


@dataclass(frozen=True)
class FormatInfo:
    """One format name and what it is for."""

    name: str
    kind: Literal["teacher", "student"]
    description: str
    uses_rationale: bool
    stop: tuple[str, ...] = ()


def list_formats(kind: Literal["teacher", "student"] | None = None) -> list[FormatInfo]:
    """Teacher formats (``render_teacher_prompt``) then student formats (``render_student_pair``)."""
    out: list[FormatInfo] = []
    if kind in (None, "teacher"):
        out += [FormatInfo(n, "teacher", d, False, TEACHER_STOPS[n]) for n, d in TEACHER_FORMATS.items()]
    if kind in (None, "student"):
        out += [
            FormatInfo(f.name, "student", f.description, f.uses_rationale, f.stop) for f in student_formats().values()
        ]
    return out

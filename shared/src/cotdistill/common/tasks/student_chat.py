"""A trained student's chat template: the conversation's user turn rendered in its training format.

A student fine-tuned on ``{q} ###`` -> `` {r} --> {a} END`` and then served through
``/v1/chat/completions`` with its original chat template sees a prompt it was never trained on.
So each checkpoint carries, as its default chat template, one that renders the last user turn
exactly as :func:`student_prompt` does (the question where the format puts it, exemplars and cues
included); the model's own template stays available under the name ``original``. Every client
(the model server, vLLM, lm-eval's chat mode, the evaluator) then sees the learned format, and
the format's name is written beside it (:data:`STUDENT_FORMAT_FILE`) for answer extraction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.tasks.student_formats import student_prompt, student_stop

STUDENT_FORMAT_FILE = "cotdistill_student.json"
ORIGINAL_TEMPLATE = "original"
_SLOT = "\u0000COTDISTILL_QUESTION\u0000"


def student_chat_template(
    format: str, *, dataset: str = "", bos_token: bool = False, data_dir: str | os.PathLike[str] | None = None
) -> str:
    """Jinja chat template rendering the last user message in ``format``.

    ``bos_token``: start with the tokenizer's BOS (when its tokenizer adds one to plain text, as
    training did; chat prompts are tokenized without special tokens, as vLLM does).
    """
    rendered = student_prompt(format, _SLOT, dataset=dataset, data_dir=data_dir)
    if rendered.count(_SLOT) != 1:
        raise InvalidArgument("format", f"format {format!r} does not place the question once; no chat template")
    before, after = rendered.split(_SLOT)
    return (
        f"{{#- cotdistill: the last user turn in the student's training format {format!r} -#}}\n"
        "{%- set ns = namespace(question='') -%}\n"
        "{%- for message in messages -%}{%- if message['role'] == 'user' -%}"
        "{%- set ns.question = message['content'] -%}{%- endif -%}{%- endfor -%}\n"
        + ("{{- bos_token -}}" if bos_token else "")
        + _literal(before)
        + "{{- ns.question -}}"
        + _literal(after)
    )


def _literal(text: str) -> str:
    # A JSON string is a valid Jinja string literal (same escapes), so any text survives verbatim.
    return f"{{{{- {json.dumps(text)} -}}}}" if text else ""


def install_student_template(tokenizer: Any, format: str, *, dataset: str = "") -> None:
    """Make ``format`` the tokenizer's default chat template, keeping its own as ``original``."""
    adds_bos = _adds_bos(tokenizer)
    template = student_chat_template(format, dataset=dataset, bos_token=adds_bos)
    current = tokenizer.chat_template
    templates: dict[str, str] = dict(current) if isinstance(current, dict) else {}
    if isinstance(current, str) and current:
        templates[ORIGINAL_TEMPLATE] = current
    templates.pop("default", None)
    tokenizer.chat_template = {"default": template, **templates} if templates else template


def write_student_format(directory: str | Path, format: str, *, dataset: str = "") -> None:
    """``cotdistill_student.json``: how to prompt and read this checkpoint."""
    doc = {"format": format, "dataset": dataset, "stop": student_stop(format)}
    Path(directory, STUDENT_FORMAT_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def read_student_format(directory: str | Path) -> dict[str, Any] | None:
    """The checkpoint's training format record, or None for a model we did not train."""
    try:
        doc = json.loads(Path(directory, STUDENT_FORMAT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("format"), str) else None


def _adds_bos(tokenizer: Any) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos

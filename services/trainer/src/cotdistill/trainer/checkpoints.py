"""Checkpoints: a directory per step, written atomically, with retention (last N + best).

Layout of ``<output_dir>/checkpoints/step-000123/``:

* ``model.safetensors`` + ``config.json`` + ``generation_config.json``: the full student (for
  LoRA runs the adapters merged in), loadable with ``from_pretrained`` by the evaluator, the
  server and vLLM;
* tokenizer files (``tokenizer.json``, ``tokenizer_config.json``, ...) whose default chat template
  renders a user turn in the training format (the model's own is kept as ``original``), and
  ``cotdistill_student.json`` naming that format (``cotdistill.common.tasks.student_chat``);
* ``adapter/`` (LoRA runs only): the peft adapter, which is what resuming loads;
* ``trainer_state.pt``: optimizer, scheduler, step, data position, RNG states;
* ``trainer_state.json``: the human-readable part (step, validation loss, is_best, config).

Everything is written into a temporary sibling directory that is renamed into place only when
complete (:meth:`ArtifactStore.staging_dir`), so a crash never leaves half a checkpoint. Only
rank 0 writes.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.tasks.student_chat import install_student_template, write_student_format

CHECKPOINTS = "checkpoints"
STATE_JSON = "trainer_state.json"
STATE_PT = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


@dataclass
class CheckpointRecord:
    """One checkpoint on disk."""

    step: int
    path: str
    validation_loss: float | None
    is_best: bool = False


def list_checkpoints(output_dir: str | Path) -> list[CheckpointRecord]:
    """Complete checkpoints under ``output_dir``, oldest first, with the best one marked."""
    root = Path(output_dir) / CHECKPOINTS
    records = []
    if root.is_dir():
        for d in root.iterdir():
            m = _STEP_DIR.match(d.name)
            if not m or not (d / STATE_JSON).is_file():
                continue
            state = json.loads((d / STATE_JSON).read_text())
            records.append(CheckpointRecord(int(m.group(1)), str(d), state.get("validation_loss")))
    records.sort(key=lambda r: r.step)
    best = best_of(records)
    for r in records:
        r.is_best = best is not None and r.step == best.step
    return records


def best_of(records: list[CheckpointRecord]) -> CheckpointRecord | None:
    """The record with the lowest validation loss (the latest among equals), or None."""
    scored = [r for r in records if r.validation_loss is not None and math.isfinite(r.validation_loss)]
    return min(scored, key=lambda r: (r.validation_loss, -r.step)) if scored else None


def latest_checkpoint(output_dir: str | Path) -> str | None:
    """Path of the newest complete checkpoint, for resuming; None when there is none."""
    records = list_checkpoints(output_dir)
    return records[-1].path if records else None


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    *,
    model: Any,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    info: dict[str, Any],
) -> str:
    """Write one checkpoint atomically; returns its final path.

    model: the (unwrapped) Hugging Face model or peft model. trainer_state: tensors and
    counters for ``torch.save``. info: JSON-able facts (step, validation_loss, config, ...).
    """
    store = ArtifactStore(output_dir)
    name = step_dir_name(step)
    with store.staging_dir(CHECKPOINTS, name) as tmp:
        stage = Path(tmp)
        if hasattr(model, "peft_config"):
            model.save_pretrained(stage / "adapter")
            merged = _merged_copy(model)
            merged.save_pretrained(stage, safe_serialization=True)
        else:
            model.save_pretrained(stage, safe_serialization=True)
        _save_tokenizer(tokenizer, stage, info)
        torch.save(trainer_state, stage / STATE_PT)
        (stage / STATE_JSON).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return store.path(CHECKPOINTS, name)


def _save_tokenizer(tokenizer: Any, stage: Path, info: dict[str, Any]) -> None:
    """The tokenizer, with a chat template that renders a user turn in the training format (the
    model's own kept as ``original``), so chat clients see what the student learned."""
    import copy

    fmt = str(((info.get("config") or {}).get("data") or {}).get("format") or "")
    dataset = str((info.get("data") or {}).get("dataset") or "")
    if not fmt:
        tokenizer.save_pretrained(stage)
        return
    tok = copy.copy(tokenizer)  # the run keeps tokenizing with the object it has
    install_student_template(tok, fmt, dataset=dataset)
    tok.save_pretrained(stage)
    write_student_format(stage, fmt, dataset=dataset)


def _merged_copy(peft_model: Any) -> Any:
    """A full model with the LoRA update merged, leaving the training model untouched."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload()


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """The ``trainer_state.pt`` of a checkpoint (optimizer, scheduler, counters, RNG)."""
    state: dict[str, Any] = torch.load(Path(path) / STATE_PT, map_location="cpu", weights_only=False)
    return state


def apply_retention(output_dir: str | Path, keep_last: int) -> list[str]:
    """Delete checkpoints beyond the newest ``keep_last`` except the best; returns removed paths.

    ``keep_last`` 0 keeps everything.
    """
    if keep_last <= 0:
        return []
    records = list_checkpoints(output_dir)
    keep = {r.step for r in records[-keep_last:]}
    best = best_of(records)
    if best is not None:
        keep.add(best.step)
    removed = []
    for r in records:
        if r.step not in keep:
            shutil.rmtree(r.path, ignore_errors=True)
            removed.append(r.path)
    return removed

"""Which models an evaluate stage sends to the evaluator: the run's checkpoints, the teacher, both."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotdistill.common.config import load_config
from cotdistill.common.errors import NotFound
from cotdistill.pipeline.demo.runner import DEFAULT_RECIPE
from cotdistill.pipeline.eval_cli import build_requests
from cotdistill.pipeline.run_config import RunConfig

BASE = ["teacher.addresses=[127.0.0.1:1]", "evaluation.evaluator_address=127.0.0.1:2"]


def _run_dir(tmp_path: Path) -> Path:
    for step in (10, 20):
        (tmp_path / "checkpoints" / f"step-{step:06d}").mkdir(parents=True)
    return tmp_path


def _labels(overrides: list[str], run_dir: Path) -> list[str]:
    config = load_config(RunConfig, DEFAULT_RECIPE, [*BASE, *overrides])
    return [r.label for r in build_requests(config, run_dir)]


def test_checkpoints_and_teacher_by_default(tmp_path: Path) -> None:
    labels = _labels(["evaluation.evaluate_teacher=true"], _run_dir(tmp_path))
    assert labels == ["student step-000010", "student step-000020", "teacher"]


def test_teacher_only_leaves_the_run_checkpoints_out(tmp_path: Path) -> None:
    overrides = ["evaluation.evaluate_teacher=true", "evaluation.evaluate_checkpoints=false"]
    assert _labels(overrides, _run_dir(tmp_path)) == ["teacher"]


def test_nothing_to_evaluate_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="evaluate_checkpoints"):
        _labels(["evaluation.evaluate_checkpoints=false"], _run_dir(tmp_path))

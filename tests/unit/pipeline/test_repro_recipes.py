"""Every repro arm's recipe keys validate against the recipe schema (no arm is refused at run time).

No test trains the arms (make repro does, for minutes), so a renamed recipe key would otherwise
surface only as a refused run in the middle of a repro.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cotdistill.common.config import load_config
from cotdistill.pipeline.demo.runner import DEFAULT_RECIPE
from cotdistill.pipeline.repro.arms import FULL, SMOKE, arms, train_overrides
from cotdistill.pipeline.run_config import RunConfig

BASE = [
    "teacher.addresses=[127.0.0.1:1]",
    "training.trainer_address=127.0.0.1:2",
    "training.student.model=/tmp/student-init",
    "evaluation.evaluator_address=127.0.0.1:3",
    "training.checkpoints.interval_steps=100",
]


@pytest.mark.parametrize("arm", arms(), ids=lambda a: f"{a.task}-{a.name}")
def test_arm_overrides_validate(arm: object, tmp_path: Path) -> None:
    for scale in (FULL, SMOKE):
        overrides = [*BASE, "stages=[train]", *train_overrides(arm, tmp_path / "samples", scale, seed=3)]  # type: ignore[arg-type]
        config = load_config(RunConfig, DEFAULT_RECIPE, overrides)
        t = config.training
        assert t.data.train_paths == [str(tmp_path / "samples")]
        assert t.data.format == arm.format  # type: ignore[attr-defined]
        assert t.data.answer_only_fraction == arm.answer_only_fraction  # type: ignore[attr-defined]
        assert (t.objective.kd_weight > 0) == ("kd" in arm.objective)  # type: ignore[attr-defined]
        assert t.objective.sft_weight == 1.0
        assert t.hyperparameters.max_steps == scale.steps and t.hyperparameters.seed == 3
        assert t.student.model == "/tmp/student-init"

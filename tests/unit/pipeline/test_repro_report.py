"""The repro report's findings are computed from evaluation result files, verdicts included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotdistill.pipeline import repro

ID, OOD = repro.TASKS[repro.MAIN_TASK]


def _write_eval(run: Path, step: int, accuracies: dict[tuple[str, str], float]) -> None:
    """One evaluator result file (the fields load_run reads) for ``step``."""
    (run / "eval").mkdir(parents=True, exist_ok=True)
    results = [
        {"dataset": dataset, "format": fmt, "accuracy": acc, "split": "test"}
        for (dataset, fmt), acc in accuracies.items()
    ]
    (run / "eval" / f"student-step-{step:06d}.json").write_text(json.dumps({"step": step, "results": results}))


def _write_selection(run: Path, by_id: int, by_ood: int) -> None:
    selections = {
        "in_distribution": {"chosen": {"step": by_id}},
        "out_of_distribution": {"chosen": {"step": by_ood}},
    }
    (run / "selections.json").write_text(json.dumps(selections))


def _student(runs: Path, task: str, arm: str, seed: int, curve: list[dict[tuple[str, str], float]]) -> None:
    run = runs / f"{task}-{arm}-s{seed}"
    for i, cell in enumerate(curve, start=1):
        _write_eval(run, 100 * i, cell)
    _write_selection(run, by_id=100 * len(curve), by_ood=100)


def _fake_runs(runs: Path, mix_cot: float) -> None:
    """Every arm of one seed with chosen accuracies: CoT beats answer-only, D helps, KD is faster."""

    def cot(id_acc: float, ans: float | None = None) -> dict[tuple[str, str], float]:
        cell = {(ID, "ft_cot"): id_acc, (OOD, "ft_cot"): 0.0}
        if ans is not None:
            cell |= {(ID, "answer_only"): ans, (OOD, "answer_only"): 0.0}
        return cell

    _student(runs, repro.MAIN_TASK, "cot_d1", 0, [cot(0.3), cot(0.5)])
    _student(runs, repro.MAIN_TASK, "cot_d4", 0, [cot(0.5, 0.0), cot(0.9, 0.0)])
    _student(runs, repro.MAIN_TASK, "cot_d8", 0, [cot(0.6), cot(0.95)])
    _student(runs, repro.MAIN_TASK, "kd_d4", 0, [cot(0.85), cot(0.95)])
    _student(runs, repro.MAIN_TASK, "mix_d4", 0, [cot(0.3, 0.2), cot(mix_cot, 0.6)])
    _student(
        runs,
        repro.MAIN_TASK,
        "answer_only_d4",
        0,
        [{(ID, "answer_only"): 0.2, (OOD, "answer_only"): 0.0}, {(ID, "answer_only"): 0.4, (OOD, "answer_only"): 0.0}],
    )
    for task, (i_name, o_name) in repro.TASKS.items():
        _write_eval(runs / f"teacher-{task}", 0, {(i_name, "zero_shot_cot"): 0.97, (o_name, "zero_shot_cot"): 0.1})
        if task != repro.MAIN_TASK:
            _student(runs, task, "cot_d4", 0, [{(i_name, "ft_cot"): 0.7, (o_name, "ft_cot"): 0.2}])


SCALE = repro.Scale(questions=100, steps=200, checkpoint_every=100, eval_limit=200, select_limit=100, seeds=1)


def _report(tmp_path: Path, mix_cot: float) -> str:
    pytest.importorskip("matplotlib")
    runs = tmp_path / "runs"
    _fake_runs(runs, mix_cot)
    report = repro.write_report(runs, tmp_path / "out", SCALE, 600.0, smoke=False)
    assert (tmp_path / "out" / "b_diverse_reasoning.png").stat().st_size > 0
    assert (tmp_path / "out" / "d_steps_to_target.png").stat().st_size > 0
    return report.read_text()


def _summary_line(text: str, letter: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"- ({letter})"))


def test_findings_follow_the_numbers(tmp_path: Path) -> None:
    text = _report(tmp_path, mix_cot=0.9)
    assert "in 10.0 minutes" in text
    assert "+50.0 points" in _summary_line(text, "a") and "**reproduces**" in _summary_line(text, "a")
    b = _summary_line(text, "b")
    assert "D = 4 vs D = 1 (ID): +40.0 points" in b and "D = 8 vs D = 1 (ID): +45.0 points" in b
    assert "teacher 97.0, student 90.0 ID" in _summary_line(text, "c")
    assert "after 100 steps vs 200: **reproduces**" in _summary_line(text, "d")
    assert "OOD selection chose step 100 instead of 200" in _summary_line(text, "e")
    assert "**reproduces** (direct answers gained, CoT accuracy kept)" in _summary_line(text, "f")


def test_mixture_that_loses_cot_accuracy_reproduces_only_in_part(tmp_path: Path) -> None:
    f = _summary_line(_report(tmp_path, mix_cot=0.4), "f")
    assert "+60.0 points" in f and "-50.0 points" in f
    assert "**reproduces in part** (direct answers gained, but CoT accuracy lost)" in f


def test_a_difference_inside_the_test_noise_is_not_a_finding() -> None:
    same = (0.85, 0.0, 1)
    assert "within noise" in repro._compare((0.87, 0.0, 1), same, "x", "y")
    assert "**not reproduced**" in repro._compare((0.87, 0.0, 1), same, "x", "y")
    assert "reversed" in repro._compare((0.5, 0.0, 1), same, "x", "y")
    assert "missing" in repro._compare((0.5, 0.0, 0), same, "x", "y")

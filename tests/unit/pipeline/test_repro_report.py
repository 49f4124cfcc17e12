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

    def cot(id_acc: float, ans: float | None = None, fmt: str = "ft_cot") -> dict[tuple[str, str], float]:
        cell = {(ID, fmt): id_acc, (OOD, fmt): 0.0}
        if ans is not None:
            answer_fmt = "fu_zs_answer" if fmt == "fu_zs_cot" else "answer_only"
            cell |= {(ID, answer_fmt): ans, (OOD, answer_fmt): 0.0}
        return cell

    _student(runs, repro.MAIN_TASK, "cot_d1", 0, [cot(0.3), cot(0.5)])
    _student(runs, repro.MAIN_TASK, "cot_d4", 0, [cot(0.5, 0.0), cot(0.9, 0.0)])
    _student(runs, repro.MAIN_TASK, "cot_d8", 0, [cot(0.6), cot(0.95)])
    _student(runs, repro.MAIN_TASK, "kd_d4", 0, [cot(0.85), cot(0.95)])
    _student(runs, repro.MAIN_TASK, "fu_cot_d4", 0, [cot(0.5, 0.0, "fu_zs_cot"), cot(0.9, 0.0, "fu_zs_cot")])
    _student(runs, repro.MAIN_TASK, "fu_mix_d4", 0, [cot(0.3, 0.2, "fu_zs_cot"), cot(mix_cot, 0.6, "fu_zs_cot")])
    _student(runs, repro.MAIN_TASK, "mix_d4", 0, [cot(0.3, 0.2), cot(0.4, 0.6)])
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
            # OOD peaks early (Fu et al.'s picture): ID selection takes step 200, OOD selection step 100.
            early, late = (
                {(i_name, "ft_cot"): 0.6, (o_name, "ft_cot"): 0.4},
                {(i_name, "ft_cot"): 0.7, (o_name, "ft_cot"): 0.1},
            )
            _student(runs, task, "cot_d4", 0, [early, late])


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
    e = _summary_line(text, "e")
    assert "coin_flip cot_d4 seed 0: step 100 instead of 200, +30.0 OOD / -10.0 ID points" in e
    assert "**reproduces** on coin_flip cot_d4 seed 0, arithmetic cot_d4 seed 0" in e
    assert "0% at every checkpoint of last_letters cot_d4, last_letters kd_d4" in e
    f = _summary_line(text, "f")
    assert f.index("**reproduces** (direct answers gained, CoT accuracy kept)") < f.index("With one prompt")
    assert "**reproduces in part** (direct answers gained, but CoT accuracy lost)" in f  # the ft_cot mixture


def test_mixture_that_loses_cot_accuracy_reproduces_only_in_part(tmp_path: Path) -> None:
    f = _summary_line(_report(tmp_path, mix_cot=0.4), "f").split("With one prompt")[0]
    assert "+60.0 points" in f and "-50.0 points" in f
    assert "**reproduces in part** (direct answers gained, but CoT accuracy lost)" in f


def test_steps_to_target_interpolates_between_checkpoints() -> None:
    run = {"steps": {50: {"k": 0.4}, 100: {"k": 0.6}, 150: {"k": 0.9}}}
    assert repro.steps_to(run, "k", 0.8) == 150
    assert repro.steps_interpolated(run, "k", 0.8) == pytest.approx(100 + 50 * (0.2 / 0.3))
    assert repro.steps_interpolated(run, "k", 0.95) is None
    assert repro.steps_interpolated({"steps": {50: {"k": 0.9}}}, "k", 0.45) == pytest.approx(25)


def test_a_difference_inside_the_test_noise_is_not_a_finding() -> None:
    same = (0.85, 0.0, 1)
    assert "within noise" in repro._compare((0.87, 0.0, 1), same, "x", "y")
    assert "**not reproduced**" in repro._compare((0.87, 0.0, 1), same, "x", "y")
    assert "reversed" in repro._compare((0.5, 0.0, 1), same, "x", "y")
    assert "missing" in repro._compare((0.5, 0.0, 0), same, "x", "y")


def test_resume_skips_only_finished_steps(tmp_path: Path) -> None:
    marker = tmp_path / "arm" / "selections.json"
    fresh = repro.Context(overrides=[], runs=tmp_path, scale=SCALE, resume=True)
    assert not fresh.done(marker, "arm")
    marker.parent.mkdir()
    marker.write_text("{}")
    assert fresh.done(marker, "arm")
    assert not repro.Context(overrides=[], runs=tmp_path, scale=SCALE).done(marker, "arm")

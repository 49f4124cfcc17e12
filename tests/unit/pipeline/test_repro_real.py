"""``make repro-real``'s plan, steps, resume and report, with the ``cotdistill`` calls recorded.

The CLI is the narrow interface replaced here: a recorder that writes what each real call would
(training/run.json, eval/*.json, eval/selection.json, filter_stats.json), with accuracies chosen
by the test, so the report's findings can be checked against known numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from cotdistill.pipeline.repro_real import report as report_module
from cotdistill.pipeline.repro_real.plan import (
    COSTS,
    CPU,
    GPU,
    MAIN_TASK,
    SMOKE,
    TASKS,
    arms,
    sampling_runs,
    seeds_of,
    students_of,
)
from cotdistill.pipeline.repro_real.runner import Eta, run_steps
from cotdistill.pipeline.repro_real.steps import Context, plan_steps, total_estimate

Accuracy = Callable[[str, int, str, str], float]
"""(run name, step, dataset, format) -> accuracy the recorder writes."""


def _value(args: Sequence[str], key: str) -> str:
    prefix = f"{key}="
    return next(a[len(prefix) :] for a in args if a.startswith(prefix))


def _has(args: Sequence[str], key: str) -> bool:
    return any(a.startswith(f"{key}=") for a in args)


class RecordingCli:
    """Stands in for ``cotdistill run``: records the calls, writes the files a real run leaves."""

    def __init__(self, runs: Path, accuracy: Accuracy) -> None:
        self.runs = runs
        self.accuracy = accuracy
        self.calls: list[list[str]] = []
        self.fail_on: str | None = None

    def __call__(self, args: Sequence[str], what: str) -> None:
        args = list(args)
        name = _value(args, "name")
        if self.fail_on and self.fail_on in name:
            raise RuntimeError(f"step {name} failed")
        self.calls.append(args)
        run = self.runs / name
        stages = json.loads(_value(args, "stages").replace("[", '["').replace("]", '"]').replace(",", '","'))
        if "filter" in stages:
            (run / "train").mkdir(parents=True, exist_ok=True)
            stats = {"kept": 7, "total": 10, "examples_kept": 7, "examples_total": 10}
            (run / "train" / "filter_stats.json").write_text(json.dumps(stats))
        if "train" in stages:
            steps = int(_value(args, "training.hyperparameters.max_steps"))
            every = int(_value(args, "training.checkpoints.interval_steps"))
            checkpoints = [{"step": str(s), "path": f"/ck/{name}/step-{s:06d}"} for s in range(every, steps + 1, every)]
            (run / "training").mkdir(parents=True, exist_ok=True)
            (run / "training" / "run.json").write_text(json.dumps({"checkpoints": checkpoints}))
        if "evaluate" in stages:
            self._evaluate(run, name, args)
        if "select" in stages:
            self._select(run, _value(args, "evaluation.selection_signal"), name)

    def _evaluate(self, run: Path, name: str, args: list[str]) -> None:
        (run / "eval").mkdir(parents=True, exist_ok=True)
        formats = json.loads(_value(args, "evaluation.formats"))
        datasets = json.loads(_value(args, "evaluation.datasets"))
        models = json.loads(_value(args, "evaluation.checkpoints"))
        if _has(args, "evaluation.evaluate_teacher") and _value(args, "evaluation.evaluate_teacher") == "true":
            models = ["teacher"]
        for model in models:
            step = int(model.rsplit("step-", 1)[1]) if "step-" in model else 0
            results = [
                {"dataset": d["name"], "format": f, "accuracy": self.accuracy(name, step, d["name"], f)}
                for d in datasets
                for f in formats
            ]
            label = model.replace("/", "_")
            (run / "eval" / f"{label}.json").write_text(json.dumps({"step": step, "results": results}))

    def _select(self, run: Path, signal: str, name: str) -> None:
        steps = sorted(
            json.loads(p.read_text())["step"] for p in (run / "eval").glob("*.json") if p.name != "selection.json"
        )
        # In-distribution selection takes the last checkpoint, out-of-distribution the first.
        chosen = steps[-1] if signal == "in_distribution" else steps[0]
        selection = {"signal": signal, "chosen": {"step": chosen}, "chosen_index": 0, "table": []}
        (run / "eval" / "selection.json").write_text(json.dumps(selection))


CURVES = {"cot_d4": (0.0, 1.0), "kd_d4": (0.6, 1.0), "answer": (0.0, 0.0), "cot_d1": (0.3, 0.3)}
"""Accuracy at steps 1 and 2 of the smoke scale, per arm: KD reaches the target a step earlier."""


def _accuracy(name: str, step: int, dataset: str, fmt: str) -> float:
    if name.startswith("untrained"):
        return 0.02
    if name.startswith("teacher"):
        return 0.7
    if name.endswith("-generic"):
        return 0.25
    if "fu_" in name:  # (f): CoT-only students cannot answer directly; the mixture can
        direct = "answer" in fmt
        return {"fu_cot_d4": 0.0 if direct else 0.6, "fu_answer_d4": 0.5 if direct else 0.1}.get(
            next(k for k in ("fu_cot_d4", "fu_answer_d4", "fu_mix_d4") if k in name), 0.6
        )
    arm = next(k for k in CURVES if k in name)
    return CURVES[arm][max(step, 1) - 1]


def _context(tmp_path: Path, cli: RecordingCli, resume: bool = False) -> Context:
    return Context(overrides=['teacher.addresses=["x"]'], runs=tmp_path, scale=SMOKE, cli=cli, resume=resume)


def test_cpu_scale_fits_its_budget_and_every_arm_has_its_samples() -> None:
    steps = plan_steps(CPU, COSTS["cpu"])
    assert total_estimate(steps) <= 150 * 60  # the 2.5 h on this machine
    assert len({s.key for s in steps}) == len(steps)  # one folder per step
    sampled = set(sampling_runs(CPU))
    assert {(a.task, a.samples) for a in arms(CPU)} <= sampled
    order = [s.key for s in steps]
    for task, d in sampled:  # samples exist before any arm trains on them
        first_arm = min(i for i, k in enumerate(order) if k.endswith("-s0") and f"-{task}-" in k)
        assert order.index(f"sample-{task}-d{d}") < first_arm


def test_gpu_scale_adds_the_second_student_and_d8() -> None:
    names = {s.key for s in plan_steps(GPU, COSTS["gpu"])}
    assert "gemma3-multiarith-kd_d4-s1" in names and "smollm2-multiarith-cot_d8-s0" in names
    assert "gemma3-gsm8k-cot_d1-s0" not in names  # side arms: the first student only
    assert all(len(seeds_of(GPU, a)) in (1, GPU.seeds) for a in arms(GPU))
    assert students_of(GPU, arms(GPU)[0]) == ("smollm2", "gemma3")


def test_selection_never_reads_a_test_or_training_question() -> None:
    main = TASKS[MAIN_TASK]
    assert main.dev and main.dev[0] == main.test[0] and main.dev[1] not in ("test", main.train[1])
    assert main.ood_dev and main.ood_dev not in main.ood


def test_steps_call_the_recipe_with_each_arms_keys(tmp_path: Path) -> None:
    cli = RecordingCli(tmp_path, _accuracy)
    ctx = _context(tmp_path, cli)
    steps = plan_steps(SMOKE, COSTS["smoke"])
    took = run_steps(ctx, steps)
    assert set(took) == {s.key for s in steps} and all(s.done(ctx) for s in steps)
    by_name: dict[str, list[list[str]]] = {}
    for call in cli.calls:
        by_name.setdefault(_value(call, "name"), []).append(call)
    sample = by_name["sample-multiarith-d4"][0]
    assert _value(sample, "sampling.split") == "train_nodev" and _value(sample, "sampling.num_samples") == "4"
    kd_train = by_name["smollm2-multiarith-kd_d4-s0"][0]
    assert _value(kd_train, "training.objective.kd_weight") == "0.5"
    assert _value(kd_train, "training.checkpoints.interval_steps") == str(SMOKE.curve_every)
    assert _value(by_name["smollm2-multiarith-cot_d4-s0"][0], "training.objective.kd_weight") == "0.0"
    mix = by_name["smollm2-multiarith-fu_mix_d4-s0"][0]
    assert _value(mix, "training.data.answer_only_fraction") == "0.5"
    assert _value(mix, "training.data.format") == "fu_zs_cot"
    # the curve arms select twice (ID, then OOD) over every checkpoint; other arms evaluate once
    kd_calls = [_value(c, "stages") for c in by_name["smollm2-multiarith-kd_d4-s0"]]
    assert kd_calls == ["[train]", "[evaluate,select]", "[select]"]
    assert [_value(c, "stages") for c in by_name["smollm2-gsm8k-answer_d1-s0"]] == ["[train]", "[evaluate]"]
    teacher = by_name["teacher-coin_flip"][0]  # greedy two-stage Zero-shot-CoT on the test questions
    assert _value(teacher, "stages") == "[sample,filter]" and _value(teacher, "sampling.split") == "test"
    assert _value(teacher, "sampling.temperature") == "0" and _value(teacher, "sampling.two_stage") == "true"
    # a coin-flip rationale ends "the coin is still heads up": its samples ask the answer in a second stage
    assert _value(by_name["sample-coin_flip-d4"][0], "sampling.two_stage") == "true"
    assert _value(sample, "sampling.two_stage") == "false"  # arithmetic rationales end in their number
    assert "smollm2-multiarith-cot_d4-s0-generic" in by_name and "untrained-smollm2-generic" in by_name


def test_resume_skips_finished_steps_and_redoes_the_interrupted_one(tmp_path: Path) -> None:
    cli = RecordingCli(tmp_path, _accuracy)
    steps = plan_steps(SMOKE, COSTS["smoke"])
    cli.fail_on = "kd_d4"
    with pytest.raises(RuntimeError):
        run_steps(_context(tmp_path, cli), steps)
    done_before = [s.key for s in steps if s.done(_context(tmp_path, cli))]
    assert "smollm2-multiarith-cot_d4-s0" in done_before and "smollm2-multiarith-kd_d4-s0" not in done_before
    cli.fail_on, cli.calls = None, []
    took = run_steps(_context(tmp_path, cli, resume=True), steps)
    assert not set(done_before) & set(took)  # nothing finished is redone
    assert "smollm2-multiarith-kd_d4-s0" in took and all(s.done(_context(tmp_path, cli)) for s in steps)
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert set(timings) == {s.key for s in steps}  # both sessions' steps, each timed once


def test_eta_rescales_the_estimates_by_the_measured_steps() -> None:
    steps = plan_steps(SMOKE, COSTS["smoke"])
    eta = Eta(steps)
    full = eta.seconds_left()
    eta.finished(steps[0], 2 * steps[0].estimate_s)  # the first step took twice its estimate
    assert eta.factor == pytest.approx(2.0)
    assert eta.seconds_left() == pytest.approx(2 * (full - steps[0].estimate_s))


def test_report_states_each_finding_from_the_numbers(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "report"
    runs.mkdir()
    run_steps(_context(runs, RecordingCli(runs, _accuracy)), plan_steps(SMOKE, COSTS["smoke"]))
    path = report_module.write_report(runs, out, SMOKE)
    text = path.read_text()
    for section in ("## (a)", "## (b)", "## (c)", "## (d)", "## (e)", "## (f)", "## Summary"):
        assert section in text
    summary = json.loads((out / "results.json").read_text())["summary"]
    # 3 questions per accuracy: only differences beyond 1.96 binomial standard errors count
    assert "multiarith: Fine-tune-CoT vs answer-only (ID): +100.0 points (noise ±0.0): **reproduces**" in summary["a"]
    assert "gsm8k: Fine-tune-CoT vs answer-only (ID): +30.0 points, within noise (±51.9)" in summary["a"]
    assert "D = 4 vs D = 1 (ID): +70.0 points (noise ±51.9): **reproduces**" in summary["b"]
    assert "coin_flip: teacher 70.0, student 100.0 (untrained 2.0): student - teacher +30.0" in summary["c"]
    # the recorder's arithmetic student passes its teacher: not Ho et al.'s pattern
    assert "unlike the paper" in summary["c"] and "**reproduced in part**" in summary["c"]
    assert "after 1 steps vs 2: **reproduces**" in summary["d"]
    # the recorder's selections: ID takes the last checkpoint, OOD the first
    assert "step 1 instead of 2" in summary["e"] and "CommonsenseQA" in summary["e"]
    assert "**reproduces** (direct answers gained, CoT accuracy kept)" in summary["f"]
    assert "mixture vs CoT only (answer-only prompt, ID): +60.0 points" in summary["f"]
    for plot in ("a_cot_vs_answer_only.png", "b_diverse_reasoning.png", "d_steps_to_target.png"):
        assert (out / plot).is_file()


def test_student_vs_teacher_follows_the_papers_pattern_per_task_kind() -> None:
    gap, overall = report_module.teacher_gap, report_module.overall
    assert gap("multiarith", 0.65, (0.125, 0.0, 1), 40)[1] is True  # far below on arithmetic
    assert gap("multiarith", 0.65, (0.55, 0.0, 1), 40)[1] is False  # within noise of the teacher
    assert gap("coin_flip", 0.425, (0.475, 0.0, 1), 40)[1] is True  # close to or above on symbolic
    assert gap("coin_flip", 0.9, (0.2, 0.0, 1), 40)[1] is False
    assert gap("last_letters", 0.0, (float("nan"), float("nan"), 0), 40)[1] is None
    assert overall([True, True, None]).startswith("**reproduced** on every task measured (not all")
    assert overall([True, False]) == "**reproduced in part**." and overall([None]) == "**not measured**."


def test_report_of_an_empty_run_says_not_measured(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    text = report_module.write_report(tmp_path / "runs", tmp_path / "out", CPU).read_text()
    assert "Not measured" in text and "| multiarith (ID) | - |" in text


def test_an_arm_without_kept_samples_is_skipped_and_reported(tmp_path: Path) -> None:
    """A teacher that solves none of a task leaves nothing to train on: the arm is marked done and
    skipped (the repro goes on), and the report names it."""
    cli = RecordingCli(tmp_path, _accuracy)
    steps = plan_steps(SMOKE, COSTS["smoke"])
    ctx = _context(tmp_path, cli)
    before_arms = [s for s in steps if not s.key.startswith(("smollm2-", "gemma3-"))]
    run_steps(ctx, before_arms)
    stats = tmp_path / "sample-last_letters-d4" / "train" / "filter_stats.json"
    stats.write_text(json.dumps({"kept": 0, "total": 16, "examples_kept": 0, "examples_total": 4}))
    run_steps(ctx, [s for s in steps if s not in before_arms])
    assert not any(_value(c, "name") == "smollm2-last_letters-cot_d4-s0" for c in cli.calls)
    text = report_module.write_report(tmp_path, tmp_path / "out", SMOKE).read_text()
    assert "smollm2-last_letters-cot_d4-s0: the filter kept none of the teacher's samples" in text
    assert "| last_letters | 70.0 | 2.0 | - |" in text

"""The steps of ``make repro-real``: each one or a few ``cotdistill run`` calls, resumable.

A step is skipped with ``--resume`` when its last output exists (a ``done.json`` it writes at the
end), so an interrupted run -- or one split over several sessions -- redoes at most the step it was
in. Every step knows its estimated cost (:mod:`plan` costs) for the progress display.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cotdistill.pipeline.demo.runner import flow, run_checkpoints
from cotdistill.pipeline.repro_real.plan import (
    BASELINE_FORMAT,
    GENERIC,
    GENERIC_FORMAT,
    MAIN_TASK,
    STUDENTS,
    TASKS,
    Arm,
    Costs,
    Scale,
    Split,
    arms,
    eval_cost,
    ood_sets,
    questions,
    sampling_runs,
    seeds_of,
    students_of,
)
from cotdistill.pipeline.sampling.stage import FILTER_STATS

DEFAULT_RECIPE = Path("configs/repro-real.yaml")
DONE = "done.json"
Cli = Callable[[Sequence[str], str], None]
"""Runs ``cotdistill ARGS`` (``demo.runner.cli`` in the runner; a recorder in the unit tests)."""


@dataclass
class Context:
    """What every step needs: the services' addresses, where runs go, how big, how to call the CLI."""

    overrides: list[str]
    runs: Path
    scale: Scale
    cli: Cli
    recipe: Path = DEFAULT_RECIPE
    resume: bool = False
    log: Callable[[str], None] = print

    def call(self, name: str, extra: Sequence[str], what: str) -> Path:
        self.cli(["run", str(self.recipe), *self.overrides, f"name={name}", f"output_dir={self.runs}", *extra], what)
        return self.runs / name


@dataclass(frozen=True)
class Step:
    """One resumable unit of the repro: ``run(ctx)`` does it; ``marker`` says it is done."""

    key: str
    title: str
    estimate_s: float
    marker: str  # path of its done.json, relative to the runs folder
    run: Callable[[Context], None] = field(compare=False)

    def done(self, ctx: Context) -> bool:
        return (ctx.runs / self.marker).is_file()


def _mark(path: Path, **facts: Any) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / DONE).write_text(json.dumps({"finished": time.time(), **facts}, indent=2))


def _ref(split: Split, group: str, limit: int) -> dict[str, Any]:
    return {"name": split[0], "split": split[1], "group": group, "limit": limit}


def _test_sets(scale: Scale, task: str) -> list[dict[str, Any]]:
    t = TASKS[task]
    return [
        _ref(t.test, "in_distribution", scale.eval_limit),
        *(_ref(o, "out_of_distribution", scale.eval_limit) for o in ood_sets(scale, t)),
    ]


def _selection_sets(scale: Scale, task: str) -> list[dict[str, Any]]:
    t = TASKS[task]
    out = []
    if t.dev:
        out.append(_ref(t.dev, "in_distribution", scale.select_limit))
    if t.ood_dev:
        out.append(_ref(t.ood_dev, "out_of_distribution", scale.select_limit))
    return out


# The steps ------------------------------------------------------------------------------------


def teacher_step(scale: Scale, costs: Costs, task: str) -> Step:
    """(c): the teacher's greedy Zero-shot-CoT on the task's test questions, two-stage as Kojima et
    al. evaluated it (rationale, then "Therefore, the answer ... is"), through its chat template:
    the sampling job at temperature 0, scored by the filter. (The evaluator's one-stage reading
    finds no answer in "the coin is still heads up".)"""
    name = f"teacher-{task}"
    t = TASKS[task]
    estimate = costs.per_call_s + scale.eval_limit * t.rationale_tokens / costs.teacher_tokens_per_s

    def run(ctx: Context) -> None:
        ctx.call(
            name,
            [
                "stages=[sample,filter]",
                f"sampling.dataset={t.test[0]}",
                f"sampling.split={t.test[1]}",
                f"sampling.limit={scale.eval_limit}",
                "sampling.num_samples=1",
                "sampling.temperature=0",
                "sampling.two_stage=true",
                f"sampling.max_tokens={t.max_tokens}",
                f"sampling.unit_size={max(1, min(50, scale.eval_limit))}",
            ],
            f"teacher on {task}",
        )
        _mark(ctx.runs / name)

    return Step(name, f"teacher on {task}", estimate, f"{name}/{DONE}", run)


def floor_formats(scale: Scale, student: str, task: str) -> list[str]:
    """The untrained student asked through its chat template and in every format its trained
    versions are asked in on ``task``: the floor of each table."""
    trained = {f for a in arms(scale) if a.task == task and student in students_of(scale, a) for f in a.eval_formats}
    return [BASELINE_FORMAT, *sorted(trained)]


def floor_steps(scale: Scale, costs: Costs, student: str) -> list[Step]:
    """The untrained student on every task it is trained on (one step per task, so an interrupted
    floor keeps the tasks done), and on the generic set."""
    tasks = sorted({a.task for a in arms(scale) if student in students_of(scale, a)})
    out = [_floor_task(scale, costs, student, task) for task in tasks]
    name = f"untrained-{student}-generic"

    def generic(ctx: Context) -> None:
        _generic(ctx, f"untrained-{student}", [STUDENTS[student]])
        _mark(ctx.runs / name)

    estimate = costs.per_call_s + eval_cost(costs, GENERIC_FORMAT, scale.generic_limit)
    out.append(Step(name, f"untrained {student}: generic ability", estimate, f"{name}/{DONE}", generic))
    return out


def _floor_task(scale: Scale, costs: Costs, student: str, task: str) -> Step:
    name = f"untrained-{student}-{task}"
    formats = floor_formats(scale, student, task)
    n = sum(s["limit"] for s in _test_sets(scale, task))
    estimate = costs.per_call_s + sum(eval_cost(costs, f, n, untrained=True) for f in formats)

    def run(ctx: Context) -> None:
        shutil.rmtree(ctx.runs / name, ignore_errors=True)
        ctx.call(
            name,
            [
                "stages=[evaluate]",
                f"evaluation.checkpoints={flow([STUDENTS[student]])}",
                f"evaluation.formats={flow(formats)}",
                f"evaluation.datasets={flow(_test_sets(scale, task))}",
                f"evaluation.max_tokens={scale.eval_max_tokens}",
            ],
            f"the untrained {student} on {task}",
        )
        _mark(ctx.runs / name)

    return Step(name, f"untrained {student} on {task} (floor)", estimate, f"{name}/{DONE}", run)


def _generic(ctx: Context, name: str, checkpoints: list[str]) -> None:
    """CommonsenseQA answer-only accuracy of ``checkpoints`` into ``<name>-generic`` (before/after)."""
    ctx.call(
        f"{name}-generic",
        [
            "stages=[evaluate]",
            f"evaluation.checkpoints={flow(checkpoints)}",
            f"evaluation.formats={flow([GENERIC_FORMAT])}",
            f"evaluation.datasets={flow([_ref(GENERIC, 'out_of_distribution', ctx.scale.generic_limit)])}",
            "evaluation.max_tokens=8",
        ],
        "generic ability (CommonsenseQA, answer only)",
    )


def sample_step(scale: Scale, costs: Costs, task: str, d: int) -> Step:
    """The teacher samples ``D = d`` rationales per training question; the filter keeps correct, complete ones."""
    name = f"sample-{task}-d{d}"
    t = TASKS[task]
    q = questions(scale, task)
    estimate = costs.per_call_s + q * d * t.rationale_tokens / costs.teacher_tokens_per_s

    def run(ctx: Context) -> None:
        # No rmtree: an interrupted sampling job resumes where it stopped (exactly-once units).
        ctx.call(
            name,
            [
                "stages=[sample,filter]",
                f"sampling.dataset={t.train[0]}",
                f"sampling.split={t.train[1]}",
                f"sampling.limit={q}",
                f"sampling.num_samples={d}",
                f"sampling.two_stage={str(t.two_stage_samples).lower()}",
                f"sampling.max_tokens={t.max_tokens}",
                f"sampling.unit_size={max(1, min(50, q))}",
            ],
            f"sampling {task} D={d}",
        )
        _mark(ctx.runs / name)

    return Step(name, f"sample {task}, D = {d}", estimate, f"{name}/{DONE}", run)


def train_overrides(scale: Scale, arm: Arm, samples: Path, seed: int, student: str) -> list[str]:
    every = scale.curve_every if arm.curve else scale.steps
    kd_weight = 0.5 if "kd" in arm.objective.split("+") else 0.0
    return [
        f"training.student.model={STUDENTS[student]}",
        f"training.data.train_paths={flow([str(samples)])}",
        f"training.data.format={arm.format}",
        f"training.data.answer_only_fraction={arm.answer_only_fraction}",
        f"training.objective.kd_weight={kd_weight}",
        f"training.hyperparameters.max_steps={scale.steps}",
        f"training.hyperparameters.batch_size={scale.batch_size}",
        f"training.hyperparameters.seed={seed}",
        f"training.checkpoints.interval_steps={every}",
    ]


def arm_step(scale: Scale, costs: Costs, arm: Arm, seed: int, student: str) -> Step:
    """Train one student, evaluate its checkpoints; the curve arms also select by ID and by OOD."""
    name = arm.run_name(student, seed)
    checkpoints = scale.steps // scale.curve_every if arm.curve else 1
    tests = sum(s["limit"] for s in _test_sets(scale, arm.task))
    selects = sum(s["limit"] for s in _selection_sets(scale, arm.task)) if arm.curve else 0
    per_checkpoint = sum(eval_cost(costs, f, tests) for f in arm.eval_formats)
    per_checkpoint += eval_cost(costs, arm.eval_formats[0], selects)
    steps_s = scale.steps * costs.train_s_per_step_at_8 * scale.batch_size / 8
    estimate = costs.per_training_s + steps_s + checkpoints * per_checkpoint + 3 * costs.per_call_s
    if arm.generic:
        estimate += eval_cost(costs, GENERIC_FORMAT, scale.generic_limit) + costs.per_call_s

    def run(ctx: Context) -> None:
        shutil.rmtree(ctx.runs / name, ignore_errors=True)  # a half-finished arm starts over
        samples = ctx.runs / f"sample-{arm.task}-d{arm.samples}" / "train"
        kept = kept_samples(samples)
        if kept == 0:  # e.g. a teacher that solves none of a task: a finding, not a crash
            ctx.log(f"{name}: the filter kept no teacher sample to train on; the arm is skipped")
            _mark(ctx.runs / name, skipped="the filter kept none of the teacher's samples")
            return
        run_dir = ctx.call(
            name, ["stages=[train]", *train_overrides(scale, arm, samples, seed, student)], f"training {name}"
        )
        found = run_checkpoints(run_dir)
        common = [
            f"evaluation.checkpoints={flow(found)}",
            f"evaluation.datasets={flow(_test_sets(scale, arm.task))}",
            f"evaluation.formats={flow(list(arm.eval_formats))}",
            f"evaluation.max_tokens={scale.eval_max_tokens}",
        ]
        selections: dict[str, Any] = {}
        if arm.curve and _selection_sets(scale, arm.task):
            sel = [f"evaluation.selection_datasets={flow(_selection_sets(scale, arm.task))}"]
            for stages, signal in (("[evaluate,select]", "in_distribution"), ("[select]", "out_of_distribution")):
                ctx.call(
                    name,
                    [f"stages={stages}", f"evaluation.selection_signal={signal}", *common, *sel],
                    f"{name}: evaluation and selection by {signal}",
                )
                selections[signal] = json.loads((run_dir / "eval" / "selection.json").read_text())
            (run_dir / "selections.json").write_text(json.dumps(selections, indent=2))
        else:
            ctx.call(name, ["stages=[evaluate]", *common], f"{name}: evaluation")
        if arm.generic:
            _generic(ctx, name, found[-1:])
        _mark(run_dir, checkpoints=found)

    title = f"{student}: {arm.task} {arm.name} seed {seed}"
    return Step(name, title, estimate, f"{name}/{DONE}", run)


def filter_stats(train_dir: Path) -> dict[str, Any] | None:
    """The filter's statistics in ``train_dir`` (None: the filter has not run there)."""
    stats = train_dir / FILTER_STATS
    return json.loads(stats.read_text()) if stats.is_file() else None


def kept_samples(train_dir: Path) -> int | None:
    """How many samples the filter kept in ``train_dir`` (None: no statistics there)."""
    stats = filter_stats(train_dir)
    return None if stats is None else int(stats.get("kept") or 0)


def plan_steps(scale: Scale, costs: Costs) -> list[Step]:
    """Every step, in the order they run: the teacher's and the floors' evaluations, the sampling
    runs (cached for every arm after), then the arms seed by seed (seed 0 of everything first, so a
    budget cut leaves every finding measured once)."""
    out = [teacher_step(scale, costs, t) for t in (MAIN_TASK, "coin_flip", "last_letters")]
    out += [step for s in scale.students for step in floor_steps(scale, costs, s)]
    out += [sample_step(scale, costs, t, d) for t, d in sampling_runs(scale)]
    for seed in range(scale.seeds):
        for arm in arms(scale):
            if seed in seeds_of(scale, arm):
                out += [arm_step(scale, costs, arm, seed, s) for s in students_of(scale, arm)]
    return out


def total_estimate(steps: Sequence[Step]) -> float:
    return sum(s.estimate_s for s in steps)

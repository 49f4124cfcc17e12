"""The arms of ``make repro``: the tasks, the scale, every student trained, and the steps that run them.

Each step is one ``cotdistill run configs/demo.yaml key=value ...`` through the public interfaces
(sampling, filtering, training on Ray Train through the trainer service, evaluation and selection
through the evaluator); with ``--resume`` a step whose last output exists is skipped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from cotdistill.pipeline.demo.runner import DEFAULT_RECIPE, DEMO_TEACHER, cli, flow, run_checkpoints, step

console = Console(highlight=False)

REPRO_TEACHER = DEMO_TEACHER
"""The demo's teacher (shared cache): last letters 60%, coin 20%, arithmetic 20%, 900 steps.

The full arithmetic teacher of shared/notes/TINY-MODELS.md (65% arithmetic, 1,700 steps) is
``TeacherRecipe()``; it doubles the teacher's training time for a task the from-scratch students
cannot learn anyway.
"""

TASKS = {
    "last_letters": ("synthetic_last_letters", "synthetic_last_letters_4"),
    "coin_flip": ("synthetic_coin_flip", "synthetic_coin_flip_4"),
    "arithmetic": ("synthetic_arithmetic", "synthetic_arithmetic_newtemplate"),
}
MAIN_TASK = "last_letters"
"""The task every ablation runs on: the one a from-scratch student can learn (TINY-MODELS.md)."""


@dataclass(frozen=True)
class Scale:
    """How big each arm is."""

    questions: int = 600
    steps: int = 600
    checkpoint_every: int = 100
    fine_checkpoint_every: int = 50  # the (d) arms: steps to a target need a finer grid
    eval_limit: int = 200
    select_limit: int = 100
    seeds: int = 2
    target_accuracy: float = 0.8


FULL = Scale()
SMOKE = Scale(
    questions=64,
    steps=40,
    checkpoint_every=20,
    fine_checkpoint_every=10,
    eval_limit=24,
    select_limit=16,
    seeds=1,
    target_accuracy=0.5,
)


@dataclass(frozen=True)
class Arm:
    """One trained student: which samples, format and objective."""

    name: str
    task: str
    samples: int  # D of the sampling run it trains on
    format: str = "ft_cot"
    objective: str = "sft"
    answer_only_fraction: float = 0.0
    eval_formats: tuple[str, ...] = ("ft_cot",)
    fine_checkpoints: bool = False  # checkpoint every Scale.fine_checkpoint_every steps
    one_seed: bool = False  # a side arm: seed 0 only


def arms() -> list[Arm]:
    """Every student trained per seed (the finding each serves in the comment)."""
    both = ("ft_cot", "answer_only")
    fu_both = ("fu_zs_cot", "fu_zs_answer")
    return [
        Arm("cot_d1", MAIN_TASK, 1),  # (b)
        Arm("cot_d4", MAIN_TASK, 4, eval_formats=both, fine_checkpoints=True),  # (a) (b) (c) (d) (e)
        Arm("cot_d8", MAIN_TASK, 8),  # (b)
        Arm("answer_only_d4", MAIN_TASK, 4, format="answer_only", eval_formats=("answer_only",)),  # (a)
        Arm("kd_d4", MAIN_TASK, 4, objective="sft+kd", fine_checkpoints=True),  # (d) (e)
        # (f) in Fu et al.'s zero-shot formats, whose CoT and answer-only prompts differ
        # ("Let's think step by step" vs "A:"), so one student can be asked for either.
        Arm("fu_cot_d4", MAIN_TASK, 4, format="fu_zs_cot", eval_formats=fu_both),
        Arm("fu_mix_d4", MAIN_TASK, 4, format="fu_zs_cot", answer_only_fraction=0.5, eval_formats=fu_both),
        # (f) what was tried first: Fine-tune-CoT's formats share the prompt "{q} ###", so a
        # mixture cannot tell the student which answer is wanted (one seed: the contrast is large).
        Arm("mix_d4", MAIN_TASK, 4, answer_only_fraction=0.5, eval_formats=both, one_seed=True),
        Arm("cot_d4", "coin_flip", 4),  # (c) (e)
        Arm("cot_d4", "arithmetic", 4),  # (c) (e)
    ]


@dataclass
class Context:
    """What every step needs: the services' addresses, the student, where runs go."""

    overrides: list[str]
    runs: Path
    scale: Scale
    results: dict[str, Any] = field(default_factory=dict)
    resume: bool = False

    def done(self, marker: Path, what: str) -> bool:
        """With ``--resume``: whether a step already finished (its last output exists)."""
        if self.resume and marker.exists():
            console.print(f"resume: {what} already done ({marker})")
            return True
        return False


def _run(ctx: Context, name: str, extra: Sequence[str], what: str) -> Path:
    cli(["run", str(DEFAULT_RECIPE), *ctx.overrides, f"name={name}", f"output_dir={ctx.runs}", *extra], what)
    return ctx.runs / name


def _datasets(task: str, split: str, limit: int) -> str:
    id_name, ood_name = TASKS[task]
    return flow(
        [
            {"name": id_name, "split": split, "group": "in_distribution", "limit": limit},
            {"name": ood_name, "split": split, "group": "out_of_distribution", "limit": limit},
        ]
    )


def _eval_overrides(ctx: Context, task: str) -> list[str]:
    s = ctx.scale
    return [
        f"evaluation.datasets={_datasets(task, 'test', s.eval_limit)}",
        f"evaluation.selection_datasets={_datasets(task, 'dev', s.select_limit)}",
    ]


def sample(ctx: Context, task: str, d: int) -> Path:
    """Sampling + filtering run ``sample-<task>-d<D>`` (the same questions for every D)."""
    step(f"sample {task}, D = {d}")
    name = f"sample-{task}-d{d}"
    if ctx.done(ctx.runs / name / "train" / "filter_stats.json", f"sampling {task} D={d}"):
        return ctx.runs / name
    return _run(
        ctx,
        f"sample-{task}-d{d}",
        [
            "stages=[sample,filter]",
            f"sampling.dataset={TASKS[task][0]}",
            f"sampling.limit={ctx.scale.questions}",
            f"sampling.num_samples={d}",
            f"sampling.max_tokens={96 if task == 'arithmetic' else 64}",
        ],
        f"sampling {task} D={d}",
    )


def train_overrides(arm: Arm, samples: Path, scale: Scale, seed: int) -> list[str]:
    """The recipe keys one arm sets on top of configs/demo.yaml (sft + kd weights 1 there)."""
    every = scale.fine_checkpoint_every if arm.fine_checkpoints else scale.checkpoint_every
    kd_weight = 1.0 if "kd" in arm.objective.split("+") else 0.0
    return [
        f"training.data.train_paths={flow([str(samples)])}",
        f"training.data.format={arm.format}",
        f"training.data.answer_only_fraction={arm.answer_only_fraction}",
        f"training.objective.kd_weight={kd_weight}",
        f"training.hyperparameters.max_steps={scale.steps}",
        f"training.hyperparameters.seed={seed}",
        f"training.checkpoints.interval_steps={every}",
        f"sampling.num_samples={arm.samples}",
    ]


def train_and_evaluate(ctx: Context, arm: Arm, seed: int) -> Path:
    """Train ``arm`` on its samples, evaluate every checkpoint, select by ID and by OOD."""
    s = ctx.scale
    name = f"{arm.task}-{arm.name}-s{seed}"
    step(f"train {name}")
    if ctx.done(ctx.runs / name / "selections.json", name):
        return ctx.runs / name
    shutil.rmtree(ctx.runs / name, ignore_errors=True)  # a half-finished arm starts over
    samples = ctx.runs / f"sample-{arm.task}-d{arm.samples}" / "train"
    run_dir = _run(ctx, name, ["stages=[train]", *train_overrides(arm, samples, s, seed)], f"training {name}")
    checkpoints = run_checkpoints(run_dir)
    common = [
        f"evaluation.checkpoints={flow(checkpoints)}",
        f"sampling.num_samples={arm.samples}",
        *_eval_overrides(ctx, arm.task),
    ]
    selections = {}
    for stages, signal in (("[evaluate,select]", "in_distribution"), ("[select]", "out_of_distribution")):
        # Select uses the first format; evaluate covers all of them (the report reads every format).
        _run(
            ctx,
            name,
            [
                f"stages={stages}",
                f"evaluation.formats={flow(list(arm.eval_formats))}",
                f"evaluation.selection_signal={signal}",
                *common,
            ],
            f"evaluation and selection by {signal}",
        )
        selections[signal] = json.loads((run_dir / "eval" / "selection.json").read_text())
    (run_dir / "selections.json").write_text(json.dumps(selections, indent=2))
    return run_dir


def evaluate_teacher(ctx: Context, task: str) -> Path:
    step(f"evaluate the teacher on {task}")
    if ctx.done(ctx.runs / f"teacher-{task}" / "report" / "report.md", f"teacher on {task}"):
        return ctx.runs / f"teacher-{task}"
    return _run(
        ctx,
        f"teacher-{task}",
        [
            "stages=[evaluate]",
            "evaluation.evaluate_teacher=true",
            "evaluation.evaluate_checkpoints=false",
            "evaluation.formats=[zero_shot_cot]",
            *_eval_overrides(ctx, task),
        ],
        f"teacher evaluation on {task}",
    )

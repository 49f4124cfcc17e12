"""``make repro``: the papers' findings in miniature, on the synthetic tasks, through the public interfaces.

``python -m cotdistill.pipeline.repro [--smoke] [--seeds N] [--out docs/repro]`` trains a tiny
teacher (cached like the demo's), starts the four services on loopback, then for every arm below
runs ``cotdistill run configs/demo.yaml key=value ...`` (sampling, filtering, training on Ray
Train through the trainer service, evaluation and selection through the evaluator), and writes a
Markdown report with plots from the evaluation results:

(a) Fine-tune-CoT (``ft_cot``) vs answer-only fine-tuning (Ho et al.);
(b) diverse reasoning: D = 4 and 8 vs D = 1 (Ho et al.);
(c) student vs teacher, per task;
(d) steps to a target accuracy with distribution matching (SFT + top-k KL) vs sample matching
    (SFT only);
(e) the checkpoint chosen by in-distribution vs out-of-distribution selection, and what
    specialization costs out of distribution (Fu et al.);
(f) CoT + answer-only mixture vs CoT only, on both abilities (Flan / Fu et al.).

Each finding is computed from the numbers and reported as it came out, including when it does
not reproduce. ``--smoke`` runs every arm at a tiny scale (a check that the runner works, not a
result).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from cotdistill.pipeline.demo.runner import (
    DEFAULT_RECIPE,
    DEMO_TEACHER,
    DemoFailed,
    cli,
    default_cache_dir,
    flow,
    run_checkpoints,
    start_services,
    step,
    stop_services,
)
from cotdistill.pipeline.demo.student import build_student
from cotdistill.pipeline.demo.tiny_teacher import build_teacher

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


def train_and_evaluate(ctx: Context, arm: Arm, seed: int) -> Path:
    """Train ``arm`` on its samples, evaluate every checkpoint, select by ID and by OOD."""
    s = ctx.scale
    name = f"{arm.task}-{arm.name}-s{seed}"
    step(f"train {name}")
    if ctx.done(ctx.runs / name / "selections.json", name):
        return ctx.runs / name
    shutil.rmtree(ctx.runs / name, ignore_errors=True)  # a half-finished arm starts over
    samples = ctx.runs / f"sample-{arm.task}-d{arm.samples}" / "train"
    every = s.fine_checkpoint_every if arm.fine_checkpoints else s.checkpoint_every
    run_dir = _run(
        ctx,
        name,
        [
            "stages=[train]",
            f"training.train_paths={flow([str(samples)])}",
            f"training.format={arm.format}",
            f"training.objective={arm.objective}",
            f"training.answer_only_fraction={arm.answer_only_fraction}",
            f"training.max_steps={s.steps}",
            f"training.checkpoint_interval_steps={every}",
            f"training.seed={seed}",
            f"sampling.num_samples={arm.samples}",
        ],
        f"training {name}",
    )
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
            "evaluation.formats=[zero_shot_cot]",
            *_eval_overrides(ctx, task),
        ],
        f"teacher evaluation on {task}",
    )


# ---------------------------------------------------------------------------------------------
# Reading results


def load_run(run_dir: Path) -> dict[str, Any]:
    """{checkpoints: {step: {(dataset, format): accuracy}}, selections: {...}} of one run."""
    per_step: dict[int, dict[str, float]] = {}
    for path in (run_dir / "eval").glob("*.json"):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "results" not in data:
            continue
        cell = per_step.setdefault(int(data.get("step", 0)), {})
        for entry in data["results"]:
            cell[f"{entry['dataset']}|{entry['format']}"] = float(entry["accuracy"])
    selections_file = run_dir / "selections.json"
    selections = json.loads(selections_file.read_text()) if selections_file.is_file() else {}
    return {"steps": dict(sorted(per_step.items())), "selections": selections}


def final(run: dict[str, Any], key: str) -> float | None:
    """Accuracy at the last checkpoint."""
    steps = run["steps"]
    if not steps:
        return None
    last = steps[max(steps)]
    return last.get(key)


def mean_sd(values: Sequence[float | None]) -> tuple[float, float, int]:
    got = [v for v in values if v is not None]
    if not got:
        return float("nan"), float("nan"), 0
    return statistics.fmean(got), (statistics.stdev(got) if len(got) > 1 else 0.0), len(got)


def pct(stats: tuple[float, float, int]) -> str:
    m, sd, n = stats
    if n == 0:
        return "-"
    return f"{100 * m:.1f}" + (f" ± {100 * sd:.1f}" if n > 1 else "")


def steps_to(run: dict[str, Any], key: str, target: float) -> int | None:
    """First checkpoint step whose accuracy reaches ``target`` (None: never)."""
    for s, cell in run["steps"].items():
        if s > 0 and cell.get(key, 0.0) >= target:
            return int(s)
    return None


def steps_interpolated(run: dict[str, Any], key: str, target: float) -> float | None:
    """Step where the accuracy curve crosses ``target``, linear between checkpoints (step 0 = 0%)."""
    prev_step, prev_acc = 0, 0.0
    for s, cell in run["steps"].items():
        if s <= 0:
            continue
        acc = cell.get(key, 0.0)
        if acc >= target:
            return prev_step + (s - prev_step) * (target - prev_acc) / max(acc - prev_acc, 1e-9)
        prev_step, prev_acc = s, acc
    return None


def ahead(a_runs: Sequence[dict[str, Any]], b_runs: Sequence[dict[str, Any]], key: str) -> tuple[int, int, int]:
    """(a ahead, b ahead, tied) over the checkpoints both have, seed by seed."""
    wins = losses = ties = 0
    for a, b in zip(a_runs, b_runs, strict=False):
        for st in sorted(set(a["steps"]) & set(b["steps"])):
            if st <= 0:
                continue
            x, y = a["steps"][st].get(key, 0.0), b["steps"][st].get(key, 0.0)
            wins, losses, ties = wins + (x > y), losses + (x < y), ties + (x == y)
    return wins, losses, ties


# ---------------------------------------------------------------------------------------------
# The report


def write_report(runs: Path, out: Path, scale: Scale, seconds: float, smoke: bool, resumed: bool = False) -> Path:
    """Compute findings (a)-(f) from the runs' evaluation results; Markdown + plots under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    EVAL_QUESTIONS["n"] = scale.eval_limit
    seeds = range(scale.seeds)
    id_name, ood_name = TASKS[MAIN_TASK]
    cot = f"{id_name}|ft_cot"
    cot_ood = f"{ood_name}|ft_cot"
    ans = f"{id_name}|answer_only"
    ans_ood = f"{ood_name}|answer_only"

    def runs_of(task: str, arm: str) -> list[dict[str, Any]]:
        return [load_run(runs / f"{task}-{arm}-s{s}") for s in seeds if (runs / f"{task}-{arm}-s{s}").is_dir()]

    def stat(task: str, arm: str, key: str) -> tuple[float, float, int]:
        return mean_sd([final(r, key) for r in runs_of(task, arm)])

    lines = ["# Miniature reproduction of the papers' findings", ""]
    lines += [
        f"Generated by `python -m cotdistill.pipeline.repro{_command_args()}` in "
        f"{seconds / 60:.1f} minutes{' (the resumed part only)' if resumed else ''} on this machine. "
        "Every number comes from the evaluator's result files of "
        "real runs: a tiny teacher trained from scratch (served by the teacher service), sampling through gRPC, "
        "students (0.25M parameters, from scratch, another tokenizer) trained by the trainer service on Ray Train, "
        "evaluated and selected by the evaluator service.",
        "",
        f"Scale: {scale.questions} questions per sampling run, {scale.steps} training steps (batch 32), "
        f"checkpoints every {scale.checkpoint_every} steps ({scale.fine_checkpoint_every} for the two arms of (d)), "
        f"{scale.eval_limit} test questions per dataset, "
        f"{scale.seeds} seed(s) per arm (mean ± standard deviation over seeds). Accuracy in %, greedy decoding, at "
        "the last checkpoint unless said otherwise. Main task: last letters of 2 names (ID) and of 4 names (OOD).",
        "",
    ]
    if smoke:
        lines += ["**Smoke run: far too small to mean anything; it only shows the runner works.**", ""]

    intro_end = len(lines)
    summary: dict[str, str] = {}
    teacher_vs_student: list[str] = []
    # (a)
    a_cot, a_ans = stat(MAIN_TASK, "cot_d4", cot), stat(MAIN_TASK, "answer_only_d4", ans)
    verdict = _compare(a_cot, a_ans, "Fine-tune-CoT", "answer-only fine-tuning")
    lines += [
        "## (a) Fine-tune-CoT vs answer-only fine-tuning",
        "",
        "| student (D = 4 samples) | ID | OOD |",
        "|---|---|---|",
        f"| Fine-tune-CoT (`ft_cot`) | {pct(a_cot)} | {pct(stat(MAIN_TASK, 'cot_d4', cot_ood))} |",
        f"| answer only | {pct(a_ans)} | {pct(stat(MAIN_TASK, 'answer_only_d4', ans_ood))} |",
        "",
        verdict,
        "",
        "Why this can fail to show here: Fine-tune-CoT's gain is largest where the answer needs intermediate "
        "results a small student cannot produce in one go; the last letters of two names are two copies, "
        "which a student also learns as a direct answer. Arithmetic, where the rationale should matter most, "
        "is learned by neither from-scratch student (see (c)).",
        "",
    ]
    # (b)
    d_stats = {d: stat(MAIN_TASK, f"cot_d{d}", cot) for d in (1, 4, 8)}
    lines += [
        "## (b) Diverse reasoning: D = 4 and 8 vs D = 1",
        "",
        "| D | ID | OOD | samples kept by the filter |",
        "|---|---|---|---|",
    ]
    for d, st in d_stats.items():
        lines.append(
            f"| {d} | {pct(st)} | {pct(stat(MAIN_TASK, f'cot_d{d}', cot_ood))} | {_kept(runs, MAIN_TASK, d)} |"
        )
    lines += [
        "",
        summary.setdefault(
            "b",
            _compare(d_stats[4], d_stats[1], "D = 4", "D = 1")
            + " "
            + _compare(d_stats[8], d_stats[1], "D = 8", "D = 1"),
        ),
        "",
    ]
    _bar(
        plt,
        out / "b_diverse_reasoning.png",
        [f"D={d}" for d in d_stats],
        list(d_stats.values()),
        "(b) accuracy vs D (ID)",
    )
    lines += ["![accuracy vs D](b_diverse_reasoning.png)", ""]
    # (c)
    lines += [
        "## (c) Student vs teacher, per task",
        "",
        "| task | teacher ID | student ID | teacher OOD | student OOD |",
        "|---|---|---|---|---|",
    ]
    for task, (i_name, o_name) in TASKS.items():
        teacher = load_run(runs / f"teacher-{task}")
        t_id = final(teacher, f"{i_name}|zero_shot_cot")
        t_ood = final(teacher, f"{o_name}|zero_shot_cot")
        s_id = stat(task, "cot_d4", f"{i_name}|ft_cot")
        s_ood = stat(task, "cot_d4", f"{o_name}|ft_cot")
        lines.append(f"| {task} | {_p(t_id)} | {pct(s_id)} | {_p(t_ood)} | {pct(s_ood)} |")
        teacher_vs_student.append(f"{task}: teacher {_p(t_id)}, student {pct(s_id)} ID")
    lines += [
        "",
        "The student (D = 4, Fine-tune-CoT, SFT) is compared with the teacher that produced its samples, each in "
        "its own format (teacher: `zero_shot_cot`; student: `ft_cot`). OOD: 4 names / 4 flips / a new "
        "arithmetic template.",
        "",
    ]
    # (d)
    kd_runs, sft_runs = runs_of(MAIN_TASK, "kd_d4"), runs_of(MAIN_TASK, "cot_d4")
    target = scale.target_accuracy
    kd_steps = [steps_to(r, cot, target) for r in kd_runs]
    sft_steps = [steps_to(r, cot, target) for r in sft_runs]
    kd_interp = [steps_interpolated(r, cot, target) for r in kd_runs]
    sft_interp = [steps_interpolated(r, cot, target) for r in sft_runs]
    won, lost, tied = ahead(kd_runs, sft_runs, cot)
    every = scale.fine_checkpoint_every
    lines += [
        f"## (d) Steps to {100 * target:.0f}% ID accuracy: distribution matching vs sample matching",
        "",
        f"| objective | first checkpoint at the target, per seed (every {every} steps) | interpolated | final ID |",
        "|---|---|---|---|",
        f"| SFT + top-5 KL (tail bucket) | {_steps(kd_steps)} | {_interp(kd_interp)} | "
        f"{pct(stat(MAIN_TASK, 'kd_d4', cot))} |",
        f"| SFT only | {_steps(sft_steps)} | {_interp(sft_interp)} | {pct(stat(MAIN_TASK, 'cot_d4', cot))} |",
        "",
        summary.setdefault(
            "d",
            _steps_verdict(kd_steps, sft_steps, every, (kd_interp, sft_interp), (won, lost, tied))
            + " Final ID: "
            + _compare(stat(MAIN_TASK, "kd_d4", cot), stat(MAIN_TASK, "cot_d4", cot), "SFT + KD", "SFT", claim=False),
        ),
        "",
        f"Checkpoint by checkpoint (same seed, same step), SFT + KD was ahead {won} times, behind {lost}, tied "
        f"{tied}. Interpolated: where the accuracy curve crosses the target, linear between checkpoints (an "
        "estimate finer than the grid).",
        "",
    ]
    _curves(plt, out / "d_steps_to_target.png", {"SFT + KD": kd_runs, "SFT": sft_runs}, cot, target)
    lines += ["![accuracy vs step](d_steps_to_target.png)", ""]
    # (e)
    lines += [
        "## (e) In-distribution vs out-of-distribution model selection",
        "",
        "| run | chosen by ID (dev) | its ID / OOD test | chosen by OOD (dev) | its ID / OOD test "
        "| best OOD test on the way |",
        "|---|---|---|---|---|---|",
    ]
    costs, verdicts, informative = [], [], []
    flat_runs: set[str] = set()
    tie_notes: list[str] = []
    for task, arm in ((MAIN_TASK, "cot_d4"), (MAIN_TASK, "kd_d4"), ("coin_flip", "cot_d4"), ("arithmetic", "cot_d4")):
        i_key, o_key = (f"{name}|ft_cot" for name in TASKS[task])
        for seed in seeds:
            run = load_run(runs / f"{task}-{arm}-s{seed}")
            if not run["selections"]:
                continue
            by_id, by_ood = (_chosen_step(run, k) for k in ("in_distribution", "out_of_distribution"))
            at_id, at_ood = run["steps"].get(by_id, {}), run["steps"].get(by_ood, {})
            peak_ood = max((c.get(o_key, 0.0) for st, c in run["steps"].items() if st > 0), default=0.0)
            final_ood = final(run, o_key) or 0.0
            costs.append(f"{task} {arm}: {100 * (peak_ood - final_ood):.1f}")
            gain = 100 * (at_ood.get(o_key, 0.0) - at_id.get(o_key, 0.0))
            lost = 100 * (at_id.get(i_key, 0.0) - at_ood.get(i_key, 0.0))
            if peak_ood > 0:
                informative.append((f"{task} {arm} seed {seed}", by_id, by_ood, gain, lost))
            else:
                flat_runs.add(f"{task} {arm}")
            ties = _tied(run, "in_distribution")
            if ties > 1:
                tie_notes.append(f"{task} {arm} seed {seed}: {ties} checkpoints")
            if by_id == by_ood:
                verdicts.append(f"{task} {arm}: both signals chose step {by_id}")
            else:
                flat = " (OOD accuracy is 0 at every checkpoint)"
                verdicts.append(
                    f"{task} {arm}: OOD selection chose step {by_ood} instead of {by_id}: "
                    f"{gain:+.1f} points OOD, {-lost:+.1f} points ID on the test split"
                    + (flat if peak_ood == 0 else "")
                )
            lines.append(
                f"| {task} {arm} seed {seed} | step {by_id} | {_p(at_id.get(i_key))} / {_p(at_id.get(o_key))} | "
                f"step {by_ood} | {_p(at_ood.get(i_key))} / {_p(at_ood.get(o_key))} | {_p(peak_ood)} |"
            )
    lines += [
        "",
        "; ".join(verdicts) + "." if verdicts else "No run with both selections.",
        "",
        summary.setdefault("e", _selection_verdict(informative, sorted(flat_runs), scale.eval_limit)),
        "",
        *(
            [
                "The ID signal tied at its best value (dev accuracy) in "
                + "; ".join(tie_notes)
                + ". The evaluator breaks a tie by the other group's accuracy, so there ID selection already "
                "took the best OOD checkpoint among the tied ones, which narrows the contrast with OOD selection.",
                "",
            ]
            if tie_notes
            else []
        ),
        "Specialization cost out of distribution (best OOD test accuracy along training minus the OOD test accuracy "
        f"at the last checkpoint, points): {', '.join(costs) or '-'}. Fu et al. find that ID-selected checkpoints "
        "lose OOD ability that an OOD signal keeps; it can only show where the OOD accuracy is above zero "
        "somewhere along training.",
        "",
    ]
    # (f)
    lines += [
        "## (f) CoT + answer-only mixture vs CoT only, on both abilities",
        "",
        "| student | CoT prompt, ID | CoT prompt, OOD | answer-only prompt, ID | answer-only prompt, OOD |",
        "|---|---|---|---|---|",
    ]
    fu = _cells(id_name, ood_name, "fu_zs_cot", "fu_zs_answer")
    ft = _cells(id_name, ood_name, "ft_cot", "answer_only")
    rows_f = (
        ("fu_cot_d4", "CoT only (`fu_zs_cot`)", fu),
        ("fu_mix_d4", "CoT + 50% answer-only (`fu_zs_cot` + `fu_zs_answer`)", fu),
        ("cot_d4", "tried first: CoT only (`ft_cot`)", ft),
        ("mix_d4", "tried first: CoT + 50% answer-only (`ft_cot` + `answer_only`, same prompt)", ft),
    )
    for arm, title, keys in rows_f:
        cells = " | ".join(pct(stat(MAIN_TASK, arm, keys[k])) for k in ("cot", "cot_ood", "ans", "ans_ood"))
        lines.append(f"| {title} | {cells} |")
    f_main = _mixture_verdict(
        stat(MAIN_TASK, "fu_mix_d4", fu["ans"]),
        stat(MAIN_TASK, "fu_cot_d4", fu["ans"]),
        stat(MAIN_TASK, "fu_mix_d4", fu["cot"]),
        stat(MAIN_TASK, "fu_cot_d4", fu["cot"]),
    )
    f_tried = _mixture_verdict(
        stat(MAIN_TASK, "mix_d4", ans),
        stat(MAIN_TASK, "cot_d4", ans),
        stat(MAIN_TASK, "mix_d4", cot),
        stat(MAIN_TASK, "cot_d4", cot),
    )
    lines += [
        "",
        "The finding (Flan; Fu et al.): a mixture keeps the direct-answer ability (answer-only prompt) that "
        "CoT-only training lacks, without losing CoT accuracy. In Fu et al.'s zero-shot formats (CoT prompt "
        "`Q: {q}\\nLet's think step by step`, answer-only prompt `Q: {q} A:`): " + f_main,
        "",
        "Both arms train for the same number of steps; `answer_only_fraction = 0.5` turns half of the examples "
        "into answer-only ones, so the mixture sees half as many rationales as the CoT-only student.",
        "",
        "Tried first, in Fine-tune-CoT's formats, whose CoT and answer-only prompts are the same (`{q} ###`), "
        "so the prompt cannot say which answer is wanted and the student answers directly for a share of "
        "CoT prompts (one seed): " + f_tried,
        "",
    ]
    summary["a"] = verdict
    summary["f"] = f"{f_main} (With one prompt for both formats: {f_tried[:-1]}.)"
    summary["c"] = "; ".join(teacher_vs_student) + "."
    titles = {
        "a": "Fine-tune-CoT vs answer-only",
        "b": "diverse reasoning",
        "c": "student vs teacher",
        "d": "distribution vs sample matching",
        "e": "ID vs OOD selection",
        "f": "CoT + answer-only mixture",
    }
    head = ["## Summary", ""] + [f"- ({k}) {titles[k]}: {summary[k]}" for k in sorted(summary)] + [""]
    lines[intro_end:intro_end] = head
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return out / "report.md"


def _command_args() -> str:
    """The scale arguments this report was made with (without the report-only flags)."""
    skip = {"--report-only": 0, "--resume": 0, "--wall-minutes": 1, "--out": 1, "--work-dir": 1}
    out, args = [], sys.argv[1:]
    i = 0
    while i < len(args):
        if args[i] in skip:
            i += 1 + skip[args[i]]
            continue
        out.append(args[i])
        i += 1
    return "".join(f" {a}" for a in out)


def _p(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


EVAL_QUESTIONS = {"n": FULL.eval_limit}
"""Test questions per accuracy (set by write_report): the sampling noise of one accuracy."""


def _compare(
    a: tuple[float, float, int],
    b: tuple[float, float, int],
    a_name: str,
    b_name: str,
    on: str = "ID",
    claim: bool = True,
) -> str:
    """The difference a - b in points, against the larger of the seed spread and the test-set noise.

    Test-set noise: 1.96 x the standard error of a difference of two accuracies on n questions
    each (binomial), so a difference inside it is not a finding.
    """
    if a[2] == 0 or b[2] == 0:
        return f"Not measured ({a_name} vs {b_name}): a run is missing."
    n = EVAL_QUESTIONS["n"]
    diff = 100 * (a[0] - b[0])
    binomial = 100 * 1.96 * math.sqrt((a[0] * (1 - a[0]) + b[0] * (1 - b[0])) / n)
    noise = max(100 * max(a[1], b[1]), binomial)
    head = f"{a_name} vs {b_name} ({on}): {diff:+.1f} points"
    if abs(diff) <= noise:
        return f"{head}, within noise (±{noise:.1f}){': **not reproduced**' if claim else ''}."
    if not claim:
        return f"{head} (beyond the noise of ±{noise:.1f})."
    word = "**reproduces**" if diff > 0 else "**does not reproduce (reversed)**"
    return f"{head} (noise ±{noise:.1f}): {word}."


def _mixture_verdict(
    mix_ans: tuple[float, float, int],
    cot_ans: tuple[float, float, int],
    mix_cot: tuple[float, float, int],
    cot_cot: tuple[float, float, int],
) -> str:
    """Both halves of the Flan finding: direct answers gained *and* CoT accuracy kept.

    Reporting only the first half would call a mixture that halves CoT accuracy a reproduction.
    """
    gain = _compare(mix_ans, cot_ans, "mixture", "CoT only", "answer-only prompt, ID", claim=False)
    cost = _compare(mix_cot, cot_cot, "mixture", "CoT only", "CoT prompt, ID", claim=False)
    if min(mix_ans[2], cot_ans[2], mix_cot[2], cot_cot[2]) == 0:
        return "Not measured: a run is missing."
    gained = "within noise" not in gain and mix_ans[0] > cot_ans[0]
    kept = "within noise" in cost or mix_cot[0] >= cot_cot[0]
    if gained and kept:
        word = "**reproduces** (direct answers gained, CoT accuracy kept)"
    elif gained:
        word = "**reproduces in part** (direct answers gained, but CoT accuracy lost)"
    elif kept:
        word = "**not reproduced** (no direct-answer gain beyond noise)"
    else:
        word = "**not reproduced** (no direct-answer gain, CoT accuracy lost)"
    return f"{gain[:-1]}; {cost[:-1]}: {word}."


def _steps(values: Sequence[int | None]) -> str:
    return ", ".join("never" if v is None else str(v) for v in values) or "-"


def _interp(values: Sequence[float | None]) -> str:
    return ", ".join("never" if v is None else f"{v:.0f}" for v in values) or "-"


def _steps_verdict(
    kd: Sequence[int | None],
    sft: Sequence[int | None],
    every: int,
    interpolated: tuple[Sequence[float | None], Sequence[float | None]],
    ahead_counts: tuple[int, int, int],
) -> str:
    """Verdict of (d): the checkpoint grid first, the interpolated crossing when the grid ties."""

    def mean(xs: Sequence[float | None]) -> float | None:
        got = [x for x in xs if x is not None]
        return statistics.fmean(got) if got and len(got) == len(xs) else None

    k, s = mean(kd), mean(sft)
    if k is None or s is None:
        return (
            f"At least one seed never reached the target (checkpoints every {every} steps): compare the curves below."
        )
    if k < s:
        return (
            f"Distribution matching reached the target after {k:.0f} steps vs {s:.0f}: **reproduces** "
            f"(resolution {every} steps)."
        )
    if k > s:
        return f"Distribution matching was slower ({k:.0f} vs {s:.0f} steps): **does not reproduce**."
    ki, si = mean(interpolated[0]), mean(interpolated[1])
    won, lost, _ = ahead_counts
    head = f"Both reached it after {k:.0f} steps on average (grid of {every} steps)"
    if ki is None or si is None:
        return f"{head}: **no speed-up**."
    crossing = f"interpolated, distribution matching crossed it after {ki:.0f} steps vs {si:.0f}"
    if ki < si and won > lost:
        return (
            f"{head}; {crossing} ({100 * (si - ki) / si:.0f}% fewer) and was ahead at {won} of "
            f"{sum(ahead_counts)} checkpoints: **reproduces weakly** (a small speed-up, below the grid's resolution)."
        )
    return (
        f"{head}; {crossing}: **no speed-up** to the target, though SFT + KD was ahead at {won} of "
        f"{sum(ahead_counts)} checkpoints (behind at {lost})."
    )


def _cells(id_name: str, ood_name: str, cot_format: str, answer_format: str) -> dict[str, str]:
    """The four (f) result keys of one pair of formats: CoT / answer-only prompt, ID / OOD."""
    return {
        "cot": f"{id_name}|{cot_format}",
        "cot_ood": f"{ood_name}|{cot_format}",
        "ans": f"{id_name}|{answer_format}",
        "ans_ood": f"{ood_name}|{answer_format}",
    }


def _selection_verdict(informative: Sequence[tuple[str, int, int, float, float]], flat: Sequence[str], n: int) -> str:
    """Fu et al.: OOD selection keeps OOD ability that ID selection gives up, at some ID cost.

    Only runs whose OOD accuracy is above zero somewhere can show it; a gain counts when it is
    beyond the test noise of one accuracy difference at 50% (the widest: 1.96 * sqrt(0.5 / n)).
    """
    if not informative:
        return (
            "OOD accuracy is 0 at every checkpoint of every run: the two signals cannot differ on OOD, "
            "**not measurable** at this scale."
        )
    noise = 100 * 1.96 * math.sqrt(0.5 / n)
    parts = [
        f"{name}: step {by_ood} instead of {by_id}, {gain:+.1f} OOD / {-lost:+.1f} ID points"
        for name, by_id, by_ood, gain, lost in informative
    ]
    shown = [name for name, _, _, gain, _ in informative if gain > noise]
    word = (
        f"**reproduces** on {', '.join(shown)} (OOD gain beyond the noise of ±{noise:.1f})"
        if shown
        else f"**not reproduced** (no OOD gain beyond the noise of ±{noise:.1f})"
    )
    return (
        "Where OOD accuracy is above zero along training, OOD selection vs ID selection: "
        + "; ".join(parts)
        + f": {word}."
        + (
            f" OOD accuracy is 0% at every checkpoint of {', '.join(flat)}: there the signals cannot differ."
            if flat
            else ""
        )
    )


def _tied(run: dict[str, Any], signal: str) -> int:
    """How many candidates share the chosen checkpoint's value of ``signal`` (1: no tie)."""
    selection = run["selections"].get(signal, {})
    table = selection.get("table", [])
    index = selection.get("chosen_index")
    if not table or index is None or index >= len(table):
        return 1
    best = table[index].get("signal_value")
    return sum(1 for row in table if row.get("signal_value") == best)


def _chosen_step(run: dict[str, Any], signal: str) -> int:
    chosen = run["selections"].get(signal, {}).get("chosen", {})
    return int(chosen.get("step", 0))


def _kept(runs: Path, task: str, d: int) -> str:
    for path in (runs / f"sample-{task}-d{d}").rglob("*stats*.json"):
        data = json.loads(path.read_text())
        if "kept" in data and "total" in data:
            return f"{data['kept']}/{data['total']}"
    return "-"


def _bar(plt: Any, path: Path, labels: list[str], stats: list[tuple[float, float, int]], title: str) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.bar(labels, [100 * s[0] for s in stats], yerr=[100 * s[1] for s in stats], capsize=4, color="#4c72b0")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(plt: Any, path: Path, groups: dict[str, list[dict[str, Any]]], key: str, target: float) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.3))
    for (name, runs), color in zip(groups.items(), ("#c44e52", "#4c72b0"), strict=False):
        for i, run in enumerate(runs):
            xs = [s for s in run["steps"] if s > 0]
            ax.plot(
                xs,
                [100 * run["steps"][s].get(key, 0.0) for s in xs],
                color=color,
                alpha=0.8,
                label=name if i == 0 else None,
            )
    ax.axhline(100 * target, color="grey", linestyle=":", label="target")
    ax.set_xlabel("training step")
    ax.set_ylabel("ID accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------


def run_repro(scale: Scale, out: Path, work: Path, cache: Path, smoke: bool, resume: bool = False) -> Path:
    started = time.monotonic()
    runs = work / "runs"
    if not resume:
        shutil.rmtree(runs, ignore_errors=True)
    # The trainer's own state always starts empty: it would otherwise resume the interrupted arm's
    # run by itself, beside the fresh one this runner starts for it.
    shutil.rmtree(work / "trainer", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    step("teacher (trained from scratch, cached) and student")
    teacher = build_teacher(
        REPRO_TEACHER,
        cache,
        lambda s, n, loss: console.print(f"teacher step {s}/{n} loss {loss:.3f}") if s % 100 == 1 else None,
    )
    student = build_student(work / "student-init")
    services = start_services(teacher, student, work)
    by_name = {s.name: s for s in services}
    ctx = Context(
        overrides=[
            f"teacher.addresses={flow([by_name['teacher'].address])}",
            f"training.trainer_address={by_name['trainer'].address}",
            f"training.student={student}",
            f"evaluation.evaluator_address={by_name['evaluator'].address}",
            "training.checkpoint_interval_steps=100",
        ],
        runs=runs,
        scale=scale,
        resume=resume,
    )
    try:
        for task in TASKS:
            evaluate_teacher(ctx, task)
        needed = sorted({(a.task, a.samples) for a in arms()})
        for task, d in needed:
            sample(ctx, task, d)
        for seed in range(scale.seeds):
            for arm in arms():
                if (arm.task != MAIN_TASK or arm.one_seed) and seed > 0:
                    continue  # other tasks serve (c) and (e) only, side arms show a contrast: one seed
                train_and_evaluate(ctx, arm, seed)
    finally:
        stop_services(services)
    report = write_report(runs, out, scale, time.monotonic() - started, smoke, resumed=resume)
    console.print(f"report: [bold]{report}[/] ({(time.monotonic() - started) / 60:.1f} min)")
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cotdistill.pipeline.repro", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every arm at a tiny scale (checks the runner)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 2; 1 with --smoke)")
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default docs/repro, .scratch/repro-smoke with --smoke)"
    )
    parser.add_argument("--questions", type=int, default=None, help="questions per sampling run")
    parser.add_argument("--steps", type=int, default=None, help="training steps per student")
    parser.add_argument("--eval-limit", type=int, default=None, help="test questions per dataset")
    parser.add_argument("--work-dir", type=Path, default=Path(".scratch/repro"))
    parser.add_argument(
        "--resume", action="store_true", help="keep finished steps of an interrupted run (same scale) and do the rest"
    )
    parser.add_argument("--report-only", action="store_true", help="re-render the report from existing runs")
    parser.add_argument("--wall-minutes", type=float, default=0.0, help="with --report-only: the runs' wall time")
    args = parser.parse_args(argv)
    scale = SMOKE if args.smoke else FULL
    changes = {
        "seeds": args.seeds,
        "questions": args.questions,
        "steps": args.steps,
        "eval_limit": args.eval_limit,
        "select_limit": args.eval_limit and max(16, args.eval_limit // 2),
    }
    scale = Scale(**{**scale.__dict__, **{k: v for k, v in changes.items() if v}})
    out = args.out or (Path(".scratch/repro-smoke") if args.smoke else Path("docs/repro"))
    work = args.work_dir.resolve()
    if args.report_only:
        console.print(write_report(work / "runs", out, scale, 60 * args.wall_minutes, args.smoke))
        return
    try:
        run_repro(scale, out.resolve(), work, default_cache_dir(), args.smoke, resume=args.resume)
    except DemoFailed as err:
        # The failing command's own error is printed above it; finished runs stay under the work dir.
        console.print(f"[red]repro failed:[/] {err}")
        console.print(f"finished steps are kept in {work / 'runs'}: `--resume` does the rest")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

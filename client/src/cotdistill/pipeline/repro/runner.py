"""``python -m cotdistill.pipeline.repro``: start the services, run every arm, write the report."""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from cotdistill.pipeline.demo.runner import DemoFailed, default_cache_dir, flow, start_services, step, stop_services
from cotdistill.pipeline.demo.student import build_student
from cotdistill.pipeline.demo.tiny_teacher import build_teacher
from cotdistill.pipeline.repro.arms import (
    FULL,
    MAIN_TASK,
    REPRO_TEACHER,
    SMOKE,
    TASKS,
    Context,
    Scale,
    arms,
    console,
    evaluate_teacher,
    sample,
    train_and_evaluate,
)
from cotdistill.pipeline.repro.report import write_report


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
            f"training.student.model={student}",
            f"evaluation.evaluator_address={by_name['evaluator'].address}",
            "training.checkpoints.interval_steps=100",
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
    from cotdistill.pipeline import repro  # the package's docstring describes the whole run

    parser = argparse.ArgumentParser(prog="python -m cotdistill.pipeline.repro", description=repro.__doc__)
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

"""``python -m cotdistill.pipeline.repro_real``: start the services, run every step, write the report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress_bar import ProgressBar
from rich.table import Table

from cotdistill.pipeline.local_services import LocalService
from cotdistill.pipeline.repro_real.plan import COSTS, SCALES, STUDENTS, TEACHER, Costs, Scale
from cotdistill.pipeline.repro_real.steps import Context, Step, plan_steps, total_estimate

console = Console(highlight=False)
STATE = "repro-real.json"
TIMINGS = "timings.json"  # the scale a work folder was started with: --resume refuses another


class Eta:
    """Remaining time from the steps' estimates, rescaled by how long the finished ones really took."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.remaining = total_estimate(steps)
        self.estimated_done = 0.0
        self.actual_done = 0.0

    def finished(self, step: Step, seconds: float) -> None:
        self.remaining -= step.estimate_s
        self.estimated_done += step.estimate_s
        self.actual_done += seconds

    def skipped(self, step: Step) -> None:
        self.remaining -= step.estimate_s

    @property
    def factor(self) -> float:
        return self.actual_done / self.estimated_done if self.estimated_done > 0 else 1.0

    def seconds_left(self) -> float:
        return max(0.0, self.remaining * self.factor)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def print_plan(steps: Sequence[Step], scale: Scale) -> None:
    table = Table("#", "step", "estimate", title=f"repro-real, scale {scale.name}")
    for i, s in enumerate(steps, 1):
        table.add_row(str(i), s.title, _minutes(s.estimate_s))
    table.add_row("", "[bold]total", f"[bold]{_minutes(total_estimate(steps))}")
    console.print(table)


def progress_line(done: int, total: int, elapsed_s: float, eta: Eta) -> Table:
    """One printed line: a bar of steps done, the time spent and the ETA. Printed at each step
    boundary rather than kept live: the steps' own `cotdistill` progress bars share the terminal."""
    line = Table.grid(padding=(0, 1))
    line.add_row(
        "[bold]repro-real",
        ProgressBar(total=max(total, 1), completed=done, width=30),
        f"{done}/{total} steps",
        f"{_minutes(elapsed_s)} this session",
        f"ETA {_minutes(eta.seconds_left())}",
    )
    return line


def run_steps(ctx: Context, steps: Sequence[Step]) -> dict[str, float]:
    """Run the steps in order (skipping finished ones with ``--resume``), printing the steps done
    and an ETA between them; returns the seconds each step took, also kept in
    ``runs/timings.json`` as each step ends (the report's wall time adds up every session's)."""
    timings = ctx.runs / TIMINGS
    recorded: dict[str, float] = json.loads(timings.read_text()) if timings.is_file() else {}
    eta = Eta(steps)
    took: dict[str, float] = {}
    session_start = time.monotonic()
    todo = []
    for step in steps:
        if ctx.resume and step.done(ctx):
            eta.skipped(step)
            console.print(f"resume: {step.title} already done")
        else:
            todo.append(step)
    done = len(steps) - len(todo)
    for step in todo:
        console.print(progress_line(done, len(steps), time.monotonic() - session_start, eta))
        console.rule(
            f"[bold cyan]{done + 1}/{len(steps)} {step.title} (about {_minutes(step.estimate_s * eta.factor)})"
        )
        started = time.monotonic()
        step.run(ctx)
        took[step.key] = time.monotonic() - started
        recorded[step.key] = took[step.key]
        timings.write_text(json.dumps(recorded, indent=2))
        eta.finished(step, took[step.key])
        done += 1
    console.print(progress_line(done, len(steps), time.monotonic() - session_start, eta))
    return took


def _services(work: Path, runs: Path) -> list[LocalService]:
    from cotdistill.pipeline.demo.runner import launch

    threads = os.environ.get("COTDISTILL_REPRO_THREADS", str(os.cpu_count() or 1))
    envs = {
        "teacher": {
            "COTDISTILL_TEACHER_MODEL": TEACHER,
            "COTDISTILL_TEACHER_BACKEND": os.environ.get("COTDISTILL_REPRO_TEACHER_BACKEND", "vllm"),
            "COTDISTILL_TEACHER_DTYPE": "bfloat16",
            "COTDISTILL_TEACHER_MAX_MODEL_LEN": "2048",
            "COTDISTILL_TEACHER_ENFORCE_EAGER": "true",
            "VLLM_CPU_KVCACHE_SPACE": "2",
        },
        "trainer": {
            "COTDISTILL_TRAINER_ARTIFACTS_DIR": str(work / "trainer"),
            "COTDISTILL_TRAINER_RAY_NUM_CPUS": threads,
        },
        "evaluator": {
            "COTDISTILL_EVALUATOR_ARTIFACTS_DIR": str(work / "evaluator"),
            "COTDISTILL_EVALUATOR_TORCH_THREADS": threads,
        },
    }
    # The steps run one at a time, so each service may use every core while it works.
    return list(launch(envs, work / "logs", [work, runs], timeout_s=1200, waiting="waiting for the health checks..."))


def _check_scale(work: Path, scale: Scale, resume: bool) -> None:
    state = work / STATE
    if resume and state.is_file():
        was = json.loads(state.read_text()).get("scale")
        if was != scale.name:
            raise SystemExit(f"{work} holds a '{was}' run: --resume it with --scale {was}, or start afresh")
    state.write_text(json.dumps({"scale": scale.name}))


def run_repro_real(
    scale: Scale, out: Path, work: Path, resume: bool, costs: Costs | None = None, report: bool = True
) -> Path | None:
    from cotdistill.common.models import pull_model
    from cotdistill.pipeline.demo.runner import cli, flow, stop_services

    started = time.monotonic()
    runs = work / "runs"
    if not resume:
        shutil.rmtree(runs, ignore_errors=True)
    # The trainer's own state starts empty: it would otherwise resume an interrupted arm by itself.
    shutil.rmtree(work / "trainer", ignore_errors=True)
    runs.mkdir(parents=True, exist_ok=True)
    _check_scale(work, scale, resume)
    steps = plan_steps(scale, costs or COSTS[scale.name])
    print_plan(steps, scale)
    console.rule("[bold cyan]models: the teacher and the students from the registry")
    for name in (TEACHER, *(STUDENTS[s] for s in scale.students)):
        with console.status(f"materializing {name} (first time: converting its GGUF)"):
            console.print(f"{name}: {pull_model(name)}")
    services = _services(work, runs)
    by_name = {s.name: s for s in services}
    ctx = Context(
        overrides=[
            f"teacher.addresses={flow([by_name['teacher'].address])}",
            f"training.trainer_address={by_name['trainer'].address}",
            f"evaluation.evaluator_address={by_name['evaluator'].address}",
            *scale.overrides,
        ],
        runs=runs,
        scale=scale,
        cli=cli,
        resume=resume,
        log=console.print,
    )
    try:
        took = run_steps(ctx, steps)
    finally:
        stop_services(services)
    console.print(f"{len(took)} step(s) done this session in {(time.monotonic() - started) / 60:.1f} min")
    if not report:
        return None
    from cotdistill.pipeline.repro_real.report import write_report

    path = write_report(runs, out, scale, resumed=resume, session_seconds=time.monotonic() - started)
    console.print(f"report: [bold]{path}[/] ({(time.monotonic() - started) / 60:.1f} min this session)")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    from cotdistill.pipeline import repro_real
    from cotdistill.pipeline.demo.runner import DemoFailed

    parser = argparse.ArgumentParser(prog="python -m cotdistill.pipeline.repro_real", description=repro_real.__doc__)
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="cpu (2.5 h here), gpu, smoke")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default docs/repro-real/<scale>)")
    parser.add_argument("--work-dir", type=Path, default=None, help="default .scratch/repro-real-<scale>")
    parser.add_argument("--resume", action="store_true", help="keep finished steps and do the rest")
    parser.add_argument("--plan", action="store_true", help="print the steps and their estimated cost, then exit")
    parser.add_argument("--report-only", action="store_true", help="re-render the report from the finished steps")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    out = (args.out or Path("docs/repro-real") / scale.name).resolve()
    work = (args.work_dir or Path(f".scratch/repro-real-{scale.name}")).resolve()
    if args.plan:
        print_plan(plan_steps(scale, COSTS[scale.name]), scale)
        return
    if args.report_only:
        from cotdistill.pipeline.repro_real.report import write_report

        console.print(write_report(work / "runs", out, scale, resumed=True))
        return
    work.mkdir(parents=True, exist_ok=True)
    try:
        run_repro_real(scale, out, work, args.resume)
    except DemoFailed as err:
        # The failing command's own error is printed above; finished steps stay in the work folder.
        console.print(f"[red]repro-real failed:[/] {err}")
        console.print(f"finished steps are kept in {work / 'runs'}: `--resume` does the rest")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: `--resume` goes on from the step it was in ({work / 'runs'})")
        raise SystemExit(130) from None

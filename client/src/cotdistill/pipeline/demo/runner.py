"""The demo's steps, in order, each one visible on the console.

Everything after the model setup goes through what a user has: ``cotdistill serve X`` processes on
loopback, ``cotdistill run RECIPE key=value ...`` (gRPC clients of the teacher, trainer and
evaluator) and HTTP to the model server. Nothing here imports a service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cotdistill.common.config import load_config
from cotdistill.pipeline import local_services
from cotdistill.pipeline.demo.student import build_student, parameter_count
from cotdistill.pipeline.demo.tiny_teacher import TeacherRecipe, build_teacher
from cotdistill.pipeline.run_config import DatasetRef, RunConfig

console = Console(highlight=False)

DEFAULT_RECIPE = Path("configs/demo.yaml")
DEMO_TEACHER = TeacherRecipe(
    mixture={"synthetic_last_letters": 0.6, "synthetic_coin_flip": 0.2, "synthetic_arithmetic": 0.2},
    num_examples=10_000,  # last letters has ~7k distinct 2-name questions besides dev/test
    steps=900,
)
"""The demo's teacher: good at last letters (the demo task) and coin flip; arithmetic half-learned."""

QUICK_TEACHER = TeacherRecipe(mixture={"synthetic_last_letters": 1.0}, num_examples=6000, steps=350)
"""A teacher for ``--quick`` (the integration test): last letters only, well under a minute on 2 idle cores."""

QUICK_SCALE = {"questions": 96, "steps": 60, "checkpoint_every": 30, "eval_limit": 48, "select_limit": 24}
"""Scale of ``--quick``: the same pipeline on a few questions and steps."""


def quick_overrides(recipe: Path) -> list[str]:
    """Recipe overrides for ``--quick`` (lists are replaced whole: overrides have no indexing)."""
    config = load_config(RunConfig, recipe)
    s = QUICK_SCALE

    def limited(refs: list[DatasetRef], limit: int) -> str:
        return flow([{**r.model_dump(exclude_none=True), "limit": min(limit, r.limit or limit)} for r in refs])

    out = [
        f"sampling.limit={s['questions']}",
        f"training.hyperparameters.max_steps={s['steps']}",
        f"training.checkpoints.interval_steps={s['checkpoint_every']}",
        f"evaluation.datasets={limited(config.evaluation.datasets, s['eval_limit'])}",
    ]
    if config.evaluation.selection_datasets:
        out.append(f"evaluation.selection_datasets={limited(config.evaluation.selection_datasets, s['select_limit'])}")
    return out


def default_cache_dir() -> Path:
    """Where built teachers are kept across runs (and across ``make clean``)."""
    root = os.environ.get("COTDISTILL_DEMO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cotdistill", "demo"
    )
    return Path(root).resolve()


@dataclass
class DemoOptions:
    """What ``python -m cotdistill.pipeline.demo`` was asked to do."""

    recipe: Path = DEFAULT_RECIPE
    overrides: list[str] = field(default_factory=list)
    work_dir: Path = Path(".scratch/demo")
    cache_dir: Path = field(default_factory=default_cache_dir)
    teacher: TeacherRecipe = DEMO_TEACHER
    keep_serving: bool = False


@dataclass
class DemoResult:
    """What the demo produced (the integration test checks these)."""

    run_dir: Path
    report: Path
    chosen_checkpoint: Path
    reason_response: dict[str, Any]
    summary: list[dict[str, Any]]
    seconds: float


class DemoFailed(RuntimeError):
    """A step failed; the message says which and where its log is."""


def _cotdistill() -> str:
    return shutil.which("cotdistill", path=str(Path(sys.executable).parent)) or "cotdistill"


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def cli(args: Sequence[str], what: str) -> None:
    """Run ``cotdistill ARGS`` with the console attached (its progress bars show live)."""
    console.print(f"[dim]$ cotdistill {escape(' '.join(args))}[/]")
    code = subprocess.call([_cotdistill(), *args])
    if code != 0:
        raise DemoFailed(f"{what} failed: `cotdistill {' '.join(args)}` exited with {code}")


def flow(value: object) -> str:
    """A YAML flow value for a key=value override (JSON is YAML)."""
    return json.dumps(value)


def _build_models(options: DemoOptions, run_root: Path) -> tuple[Path, Path]:
    step("1/7 models: a tiny teacher trained from scratch, a smaller student with another tokenizer")
    recipe = options.teacher
    cached = (options.cache_dir / f"teacher-{recipe.key()}" / "recipe.json").is_file()
    started = time.monotonic()
    with Progress(
        TextColumn("training the teacher"),
        BarColumn(),
        TextColumn("step {task.completed:.0f}/{task.total:.0f}  loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=cached,
    ) as bar:
        task = bar.add_task("teacher", total=recipe.steps, loss="-")

        def progress(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, loss=f"{loss:.3f}")

        teacher = build_teacher(recipe, options.cache_dir, progress)
    info = json.loads((teacher / "recipe.json").read_text())
    how = "cached" if cached else f"trained in {time.monotonic() - started:.0f} s"
    console.print(
        f"teacher: {parameter_count(teacher) / 1e6:.2f}M params, byte-level BPE, {how} "
        f"(recipe {recipe.key()}, final loss {info.get('final_loss', float('nan')):.3f}) -> {teacher}"
    )
    student = build_student(run_root / "student-init")
    console.print(f"student: {parameter_count(student) / 1e6:.2f}M params, Metaspace BPE (untrained) -> {student}")
    return teacher, student


def start_services(
    teacher: Path, student: Path, work: Path, roots: Sequence[Path] = ()
) -> list[local_services.LocalService]:
    """Start the four services; requests may name files under ``work`` and ``roots`` (run
    directories), as an operator allows with COTDISTILL_<SERVICE>_PATH_ROOTS."""
    step("2/7 services: teacher, trainer, evaluator and server on loopback")
    logs = work / "logs"
    envs = {
        "teacher": {
            "COTDISTILL_TEACHER_MODEL": str(teacher),
            "COTDISTILL_TEACHER_BACKEND": "transformers",
            "COTDISTILL_TEACHER_NUM_THREADS": "1",
        },
        "trainer": {
            "COTDISTILL_TRAINER_ARTIFACTS_DIR": str(work / "trainer"),
            "COTDISTILL_TRAINER_RAY_NUM_CPUS": "2",
        },
        "evaluator": {
            "COTDISTILL_EVALUATOR_ARTIFACTS_DIR": str(work / "evaluator"),
            "COTDISTILL_EVALUATOR_TORCH_THREADS": "2",
        },
        "server": {
            "COTDISTILL_SERVER_MODEL": str(student),
            "COTDISTILL_SERVER_ALLOW_UNAUTHENTICATED": "true",
            "COTDISTILL_SERVER_REASON_FORMAT": "ft_cot",
        },
    }
    return launch(envs, logs, [work, *roots], timeout_s=180, waiting="waiting for the health checks...")


def launch(
    envs: dict[str, dict[str, str]], logs: Path, roots: Sequence[Path], *, timeout_s: float, waiting: str
) -> list[local_services.LocalService]:
    """Start one service per ``envs`` entry (each may open request paths under ``roots``: the run
    folders), wait for their health checks, print a table; stop them all if any fails to come up."""
    services: list[local_services.LocalService] = []
    try:
        for name, env in envs.items():
            extra = local_services.path_roots_env(name, roots)
            services.append(local_services.start(name, logs, {**env, **extra}))
        with console.status(waiting):
            ready = asyncio.run(_wait_all(services, timeout_s))
    except BaseException:
        stop_services(services)
        raise
    table = Table("service", "address", "ready after", "log", title="services")
    for service, seconds in zip(services, ready, strict=True):
        table.add_row(service.name, service.address, f"{seconds:.1f} s", str(service.log_path))
    console.print(table)
    return services


async def _wait_all(services: Sequence[local_services.LocalService], timeout_s: float) -> list[float]:
    return list(await asyncio.gather(*(local_services.wait_ready(s, timeout_s=timeout_s) for s in services)))


def stop_services(services: Sequence[local_services.LocalService]) -> list[int]:
    return [local_services.stop(s) for s in services]


def _base_overrides(options: DemoOptions, services: dict[str, local_services.LocalService], student: Path) -> list[str]:
    return [
        f"teacher.addresses={flow([services['teacher'].address])}",
        f"training.trainer_address={services['trainer'].address}",
        f"training.student.model={student}",
        f"evaluation.evaluator_address={services['evaluator'].address}",
        f"serving.url=http://{services['server'].address}",
        *options.overrides,
    ]


def run_checkpoints(run_dir: Path) -> list[str]:
    """Checkpoint directories of the trainer run recorded by the train stage (training/run.json)."""
    run = json.loads((run_dir / "training" / "run.json").read_text())
    paths = [c["path"] for c in run.get("checkpoints", []) if c.get("path")]
    if not paths:
        raise DemoFailed(f"the trainer run kept no checkpoint (see {run_dir / 'training' / 'run.json'})")
    return paths


def _summary(run_dir: Path) -> list[dict[str, Any]]:
    """One row per evaluated model: label, step, role, per-dataset accuracy and group means."""
    rows = []
    for path in sorted((run_dir / "eval").glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "results" not in data:
            continue
        rows.append(
            {
                "label": data.get("label", path.stem),
                "step": int(data.get("step", 0)),
                "role": str(data.get("tags", {}).get("role", "student")),
                "accuracy": {f"{e['dataset']}/{e['format']}": float(e["accuracy"]) for e in data["results"]},
                "path": str(path),
                "groups": {k: float(v) for k, v in data.get("group_accuracy", {}).items()},
            }
        )
    rows.sort(key=lambda r: (r["role"] != "teacher", r["step"]))
    return rows


def _ask(server_url: str, question: str, dataset: str) -> dict[str, Any]:
    body = {"question": question, "dataset": dataset, "max_tokens": 64}
    response = httpx.post(f"{server_url}/v1/reason", json=body, timeout=60)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def run_demo(options: DemoOptions) -> DemoResult:
    """The whole demo; returns its artifacts. Services are always stopped at the end."""
    started = time.monotonic()
    config = load_config(RunConfig, options.recipe, options.overrides)
    work = options.work_dir.resolve()
    run_root = Path(config.output_dir).resolve()
    run_dir = run_root / config.name
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time: timings mean something
    shutil.rmtree(work / "trainer", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    teacher, student = _build_models(options, work)
    services = start_services(teacher, student, work, roots=[run_root])
    by_name = {s.name: s for s in services}
    recipe = str(options.recipe)
    base = _base_overrides(options, by_name, student)
    try:
        step("3/7 sample D rationales per question (top-k logprobs, gRPC) and filter them; 4/7 train the student")
        cli(["run", recipe, *base, "stages=[sample,filter,train]"], "sample/filter/train")
        checkpoints = run_checkpoints(run_dir)

        step("5/7 evaluate the teacher (its own prompt format) and every student checkpoint, ID and OOD")
        cli(
            [
                "run",
                recipe,
                *base,
                "stages=[evaluate]",
                "evaluation.evaluate_teacher=true",
                "evaluation.evaluate_checkpoints=false",  # the students, in their own format, next
                "evaluation.formats=[zero_shot_cot]",
            ],
            "teacher evaluation",
        )
        step("6/7 evaluate the students and select a checkpoint")
        cli(
            ["run", recipe, *base, "stages=[evaluate,select]", f"evaluation.checkpoints={flow(checkpoints)}"],
            "student evaluation and selection",
        )
        selection = json.loads((run_dir / "eval" / "selection.json").read_text())
        chosen = Path(selection["chosen"]["model"]["checkpoint_path"])

        step("7/7 serve the chosen checkpoint and ask it a question over HTTP")
        server_url = f"http://{by_name['server'].address}"
        reload = httpx.post(f"{server_url}/admin/reload", json={"model": str(chosen)}, timeout=120)
        reload.raise_for_status()
        console.print(f"server reloaded: {reload.json()}")
        question, dataset, reference = _demo_question(config)
        answer = _ask(server_url, question, dataset)
        console.print(
            Panel(
                f"[bold]Q:[/] {question}\n[bold]rationale:[/] {answer['rationale']}\n"
                f"[bold]answer:[/] {answer['answer']}  {_verdict(answer['answer'], reference)}",
                title="POST /v1/reason",
            )
        )
        summary = _summary(run_dir)
        report = run_dir / "report" / "report.md"
        plot = plot_teacher_vs_student(summary, chosen, report.parent)
        _print_summary(summary, report, chosen, time.monotonic() - started)
        if plot is not None:
            console.print(f"teacher vs chosen student: [bold]{plot}[/]")
        _print_try(server_url, question, dataset, chosen, options.keep_serving)
        if options.keep_serving:
            console.print("[bold]serving until Ctrl-C[/]")
            try:
                while by_name["server"].proc.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    finally:
        with console.status("stopping the services..."):
            codes = stop_services(services)
        console.print(f"services stopped (exit codes {codes}); logs in {work / 'logs'}")
    return DemoResult(run_dir, report, chosen, answer, summary, time.monotonic() - started)


def _demo_question(config: RunConfig) -> tuple[str, str, str]:
    """(question, dataset, reference answer): the first test question, so every run asks the same."""
    from cotdistill.common import tasks

    dataset = config.evaluation.datasets[0].name if config.evaluation.datasets else config.sampling.dataset
    example = tasks.load_dataset(dataset, "test", limit=1)[0]
    return example.question, dataset, example.answer


def _verdict(answer: object, reference: str) -> str:
    # The demo's tasks have exact answers (letters, heads/tails, integers): a plain comparison is the metric.
    if str(answer).strip().lower() == reference.strip().lower():
        return f"[green]correct[/] (reference: {reference})"
    return f"[red]wrong[/] (reference: {reference}; one question, see the accuracy table)"


def _print_summary(summary: list[dict[str, Any]], report: Path, chosen: Path, seconds: float) -> None:
    table = Table("model", "step", "format", "ID %", "OOD %", title="accuracy on the test splits")
    for row in summary:
        g = row["groups"]
        cells = [f"{100 * g[k]:.1f}" if k in g else "-" for k in ("in_distribution", "out_of_distribution")]
        formats = sorted({key.split("/")[-1] for key in row["accuracy"]})
        label = row["label"] + (" [green](chosen)[/]" if row["label"].endswith(chosen.name) else "")
        table.add_row(label, str(row["step"]) if row["role"] != "teacher" else "-", ", ".join(formats), *cells)
    console.print(table)
    console.print(f"report with plots: [bold]{report}[/]")
    console.print(f"demo wall time: [bold]{seconds:.0f} s[/]")


def plot_teacher_vs_student(summary: list[dict[str, Any]], chosen: Path, out: Path) -> Path | None:
    """Bars per dataset: the teacher (its prompt format) beside the chosen student (``ft_cot``).

    The evaluator's report pairs teacher and student only on a shared (dataset, format), and the
    demo's teacher and student each answer in their own format, so the demo draws this one itself.
    """
    teacher = next((r for r in summary if r["role"] == "teacher"), None)
    student = next((r for r in summary if r["role"] != "teacher" and r["label"].endswith(chosen.name)), None)
    if teacher is None or student is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def by_dataset(row: dict[str, Any]) -> dict[str, float]:
        return {key.split("/")[0]: value for key, value in row["accuracy"].items()}

    t, st = by_dataset(teacher), by_dataset(student)
    names = [n for n in t if n in st]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(names), 3.2))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [100 * t[n] for n in names], width=0.4, label="teacher (zero_shot_cot)")
    ax.bar([x + 0.2 for x in xs], [100 * st[n] for n in names], width=0.4, label=f"student {chosen.name} (ft_cot)")
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "demo_teacher_vs_student.png"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _print_try(server_url: str, question: str, dataset: str, chosen: Path, keep_serving: bool) -> None:
    body = json.dumps({"question": question, "dataset": dataset})
    curl = f"curl -s {server_url}/v1/reason -H 'Content-Type: application/json' -d '{body}'"
    if keep_serving:
        console.print(f"try:\n  {curl}")
        return
    console.print(
        "try it (the demo stops its services; serve the chosen checkpoint again with):\n"
        f"  COTDISTILL_SERVER_MODEL={chosen} COTDISTILL_SERVER_ALLOW_UNAUTHENTICATED=true cotdistill serve server &\n"
        f"  {curl.replace(server_url, 'http://127.0.0.1:8000')}"
    )


def parse_args(argv: Sequence[str] | None = None) -> DemoOptions:
    parser = argparse.ArgumentParser(prog="python -m cotdistill.pipeline.demo", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides of the recipe")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="run recipe (default configs/demo.yaml)")
    parser.add_argument("--work-dir", type=Path, default=Path(".scratch/demo"), help="service artifacts and logs")
    parser.add_argument("--cache-dir", type=Path, default=None, help="teacher cache (default ~/.cache/cotdistill/demo)")
    parser.add_argument("--quick", action="store_true", help="a few questions and steps (the integration test)")
    parser.add_argument("--keep-serving", action="store_true", help="keep the server up after the demo")
    args = parser.parse_args(argv)
    return DemoOptions(
        recipe=args.recipe,
        overrides=[*(quick_overrides(args.recipe) if args.quick else ()), *args.overrides],
        work_dir=args.work_dir,
        cache_dir=(args.cache_dir or default_cache_dir()).resolve(),
        teacher=QUICK_TEACHER if args.quick else DEMO_TEACHER,
        keep_serving=args.keep_serving,
    )


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    try:
        run_demo(options)
    except DemoFailed as err:
        console.print(f"[red]demo failed:[/] {err}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise SystemExit(130) from None

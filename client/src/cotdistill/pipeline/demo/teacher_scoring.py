"""Teacher scoring in the loop, measured on real models: SFT on teacher samples vs KD on gold
rationales vs on-policy distillation, the same training budget each.

    python -m cotdistill.pipeline.demo.teacher_scoring [key=value ...] [--smoke] [--report-dir docs/teacher-scoring]

Qwen2.5-Coder-0.5B-Instruct (vLLM backend) and SmolLM2-135M-Instruct (another tokenizer), GSM8K
train questions, as real services on loopback (teacher, trainer on Ray Train, evaluator), driven
only through ``cotdistill run`` (``configs/teacher-scoring.yaml``):

* ``sft-samples``: the teacher samples the questions (``sample``), the correct samples are kept
  (``filter``), the student is fine-tuned on them (``objective: sft``);
* ``kd-gold``: the teacher scores GSM8K's gold rationales of the same questions (``score``), the
  student trains on them with SFT + top-k KD (the teacher's distribution over the human text);
* ``on-policy``: ``kd-gold``'s data and objective, plus half of the steps on the student's own
  samples scored by the teacher (``training.on_policy.fraction: 0.5``, generalized JSD).

Every checkpoint (and the untrained student) is evaluated on GSM8K test (in distribution) and
MultiArith test (out of distribution) by the evaluator service; the report (Markdown, a JSON of
every number, a plot of accuracy vs step) goes to ``--report-dir``. ``--smoke`` runs the same flow
on a handful of questions and steps (a check that it runs, not a result).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cotdistill.common.config import load_config
from cotdistill.common.models import pull_model
from cotdistill.pipeline import local_services
from cotdistill.pipeline.demo.real import STUDENT, TEACHER
from cotdistill.pipeline.demo.runner import cli, console, flow, launch, run_checkpoints, step, stop_services
from cotdistill.pipeline.reports import accuracy_rows
from cotdistill.pipeline.run_config import RunConfig

DEFAULT_RECIPE = Path("configs/teacher-scoring.yaml")
BASELINE_FORMAT = "chat_zero_shot_cot"  # the untrained student, asked through its own chat template
SMOKE = {
    "sampling.limit": 6,
    "sampling.num_samples": 1,
    "sampling.max_tokens": 160,
    "sampling.unit_size": 6,
    "scoring.limit": 6,
    "scoring.unit_size": 6,
    "filter.require_correct": "false",
    "training.hyperparameters.max_steps": 2,
    "training.hyperparameters.batch_size": 2,
    "training.hyperparameters.warmup_steps": 0,
    "training.checkpoints.interval_steps": 1,
    "training.on_policy.max_new_tokens": 24,
}
SMOKE_EVAL_LIMIT = 3


@dataclass(frozen=True)
class Arm:
    key: str
    title: str
    stages: tuple[str, ...]
    overrides: tuple[str, ...] = ()


def arms(runs: Path) -> list[Arm]:
    kd_train = runs / "ts-kd-gold" / "train"
    return [
        Arm(
            "sft-samples", "SFT on teacher samples", ("sample", "filter", "train"), ("training.objective.kd_weight=0",)
        ),
        Arm("kd-gold", "SFT + KD on gold rationales", ("score", "filter", "train")),
        Arm(
            "on-policy",
            "KD on gold + on-policy (GKD, lambda 0.5)",
            ("train",),
            ("training.on_policy.fraction=0.5", f"training.data.train_paths={flow([str(kd_train)])}"),
        ),
    ]


@dataclass
class Options:
    recipe: Path = DEFAULT_RECIPE
    overrides: list[str] = field(default_factory=list)
    work_dir: Path = Path(".scratch/teacher-scoring")
    report_dir: Path | None = Path("docs/teacher-scoring")
    eval_limit: int | None = None
    only: list[str] = field(default_factory=list)
    report_only: bool = False


def _services(work: Path, runs: Path) -> list[local_services.LocalService]:
    step("services: teacher (vLLM, Qwen), trainer (Ray Train), evaluator on loopback; one thread each")
    one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    envs = {
        "teacher": {
            "COTDISTILL_TEACHER_MODEL": TEACHER,
            "COTDISTILL_TEACHER_BACKEND": "vllm",
            "COTDISTILL_TEACHER_DTYPE": "bfloat16",
            "COTDISTILL_TEACHER_MAX_MODEL_LEN": "2048",
            "COTDISTILL_TEACHER_ENFORCE_EAGER": "true",
            "VLLM_CPU_KVCACHE_SPACE": "2",
            "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "0"),
        },
        "trainer": {
            **one_thread,
            "COTDISTILL_TRAINER_ARTIFACTS_DIR": str(work / "trainer"),
            "COTDISTILL_TRAINER_RAY_NUM_CPUS": "2",
        },
        "evaluator": {
            **one_thread,
            "COTDISTILL_EVALUATOR_ARTIFACTS_DIR": str(work / "evaluator"),
            "COTDISTILL_EVALUATOR_TORCH_THREADS": "1",
        },
    }
    # the services open the run folders the recipe names (shards, checkpoints)
    return launch(envs, work / "logs", [work, runs], timeout_s=1200, waiting="waiting for the health checks...")


def _eval_limits(config: RunConfig, limit: int | None) -> list[str]:
    if limit is None:
        return []
    refs = [{**r.model_dump(exclude_none=True), "limit": limit} for r in config.evaluation.datasets]
    return [f"evaluation.datasets={flow(refs)}"]


def run(options: Options) -> dict[str, Any]:
    """Every arm, evaluated; returns (and writes, with --report-dir) the results."""
    started = time.monotonic()
    config = load_config(RunConfig, options.recipe, options.overrides)
    runs = Path(config.output_dir).resolve()
    work = options.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "trainer", ignore_errors=True)
    chosen_arms = [a for a in arms(runs) if not options.only or a.key in options.only]
    for arm in chosen_arms:  # fresh runs (on-policy alone reuses an earlier kd-gold's shards)
        shutil.rmtree(runs / f"ts-{arm.key}", ignore_errors=True)
    shutil.rmtree(runs / "ts-untrained", ignore_errors=True)
    step("models: pull the teacher and the student from the registry")
    for name in (TEACHER, STUDENT):
        console.print(f"{name}: {pull_model(name)}")
    services = _services(work, runs)
    by_name = {s.name: s for s in services}
    base = [
        str(options.recipe),
        f"teacher.addresses={flow([by_name['teacher'].address])}",
        f"training.trainer_address={by_name['trainer'].address}",
        f"evaluation.evaluator_address={by_name['evaluator'].address}",
        *_eval_limits(config, options.eval_limit),
        *options.overrides,
    ]
    results: dict[str, Any] = {"arms": {}, "phases": {}}
    load_before = os.getloadavg()
    try:
        step("the untrained student, through its own chat template and in the training format")
        t0 = time.monotonic()
        cli(
            ["run", *base, "name=ts-untrained", "stages=[evaluate]", f"evaluation.checkpoints={flow([STUDENT])}",
             f"evaluation.formats={flow([BASELINE_FORMAT, config.training.data.format])}"],
            "evaluation of the untrained student",
        )  # fmt: skip
        results["phases"]["evaluate untrained"] = time.monotonic() - t0
        for arm in chosen_arms:
            step(f"arm {arm.key}: {arm.title}")
            name = f"ts-{arm.key}"
            t0 = time.monotonic()
            cli(["run", *base, f"name={name}", f"stages={flow(list(arm.stages))}", *arm.overrides], arm.key)
            results["phases"][f"{arm.key}: {'+'.join(arm.stages)}"] = time.monotonic() - t0
            t0 = time.monotonic()
            checkpoints = run_checkpoints(runs / name)
            cli(
                ["run", *base, f"name={name}", "stages=[evaluate]", f"evaluation.checkpoints={flow(checkpoints)}"],
                f"{arm.key} evaluation",
            )
            results["phases"][f"{arm.key}: evaluate"] = time.monotonic() - t0
            results["arms"][arm.key] = _arm_results(arm, runs / name, by_name["trainer"].address)
    finally:
        stop_services(services)
    results["untrained"] = _accuracies(runs / "ts-untrained")
    results["seconds"] = time.monotonic() - started
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    results["config"] = {
        "questions": config.scoring.limit,
        "num_samples": config.sampling.num_samples,
        "steps": config.training.hyperparameters.max_steps,
        "batch_size": config.training.hyperparameters.batch_size,
        "learning_rate": config.training.hyperparameters.learning_rate,
        "eval": {d.name: options.eval_limit or d.limit for d in config.evaluation.datasets},
    }
    if options.report_dir is not None:
        from cotdistill.pipeline.demo.teacher_scoring_report import write_report

        path = write_report(options.report_dir, results, config)
        console.print(f"report: [bold]{path}[/]")
    return results


def _accuracies(run_dir: Path) -> list[dict[str, Any]]:
    """(step, format, {dataset: accuracy, n, ci95}) of every evaluation result in ``run_dir/eval``."""
    return sorted(accuracy_rows(run_dir), key=lambda r: (r["step"], r["format"]))


def rerender(options: Options) -> Path:
    """The report again from the runs' result files and the last run's ``results.json`` (phases,
    training figures): for a changed report, without training anything."""
    from cotdistill.pipeline.demo.teacher_scoring_report import write_report

    if options.report_dir is None:
        raise SystemExit("--report-only needs a --report-dir")
    config = load_config(RunConfig, options.recipe, options.overrides)
    runs = Path(config.output_dir).resolve()
    results = json.loads((options.report_dir / "results.json").read_text())
    results["untrained"] = _accuracies(runs / "ts-untrained")
    for key, arm in results["arms"].items():
        arm["accuracy"] = _accuracies(runs / f"ts-{key}")
    return write_report(options.report_dir, results, config)


def _arm_results(arm: Arm, run_dir: Path, trainer_address: str) -> dict[str, Any]:
    out: dict[str, Any] = {"title": arm.title, "accuracy": _accuracies(run_dir)}
    stats = run_dir / "train" / "filter_stats.json"
    if stats.is_file():
        s = json.loads(stats.read_text())
        out["data"] = {"total": s.get("total"), "kept": s.get("kept")}
    run = json.loads((run_dir / "training" / "run.json").read_text())
    out["steps"] = _step_events(trainer_address, str(run.get("runId", "")))
    return out


def _step_events(address: str, run_id: str) -> list[dict[str, Any]]:
    """The run's step events (loss, parts, on-policy figures) through WatchRun."""
    import grpc

    from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc

    if not run_id:
        return []
    with grpc.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        call = stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run_id), timeout=120)
        return [
            {
                "step": r.event.step.step,
                "loss": r.event.step.loss,
                "parts": dict(r.event.step.loss_parts),
                "metrics": dict(r.event.step.metrics),
                "tokens_per_second": r.event.step.tokens_per_second,
            }
            for r in call
            if r.event.HasField("step")
        ]


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m cotdistill.pipeline.demo.teacher_scoring", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides of the recipe")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--work-dir", type=Path, default=Path(".scratch/teacher-scoring"))
    parser.add_argument("--report-dir", type=Path, default=Path("docs/teacher-scoring"), help="'' for no report")
    parser.add_argument("--smoke", action="store_true", help="a handful of questions and steps")
    parser.add_argument("--only", nargs="*", default=[], help="arms to run (default: all)")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render the report from the runs and its results.json"
    )
    args = parser.parse_args(argv)
    smoke = [f"{k}={v}" for k, v in SMOKE.items()] if args.smoke else []
    return Options(
        recipe=args.recipe,
        overrides=[*smoke, *args.overrides],
        work_dir=args.work_dir,
        report_dir=args.report_dir if str(args.report_dir) else None,
        eval_limit=SMOKE_EVAL_LIMIT if args.smoke else None,
        only=list(args.only),
        report_only=bool(args.report_only),
    )


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    if options.report_only:
        console.print(f"report: [bold]{rerender(options)}[/]")
        return
    run(options)


if __name__ == "__main__":
    main()

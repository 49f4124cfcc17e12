"""``cotdistill eval`` / ``cotdistill report`` and the pipeline's ``evaluate`` and ``select`` stages.

A client of the evaluator service: builds Evaluate/Select requests from the run recipe's
``evaluation`` section, shows a progress bar while results stream, and renders the report
(:mod:`cotdistill.pipeline.reports`) from the ``eval/*.json`` files the service wrote into the run.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cotdistill.common import enums
from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.config import dump_config, load_config
from cotdistill.common.errors import CotdistillError, InvalidArgument, NotFound, Unavailable
from cotdistill.common.grpc_client import open_channel
from cotdistill.common.models import is_registry_name
from cotdistill.pipeline import stages
from cotdistill.pipeline.reports import Report, render_run_report
from cotdistill.pipeline.run_config import DatasetRef, EvaluationSection, RunConfig
from cotdistill.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc

_STEP = re.compile(r"step[-_]?(\d+)$")
GROUPS = enums.names(evaluator_pb2.DatasetGroup)
SIGNALS = enums.names(evaluator_pb2.SelectionSignal, drop_suffix="_ACCURACY")
# Files in a checkpoint directory where the trainer may record the validation loss.
LOSS_FILES = ("run_state.json", "trainer_state.json", "state.json", "metrics.json")
LOSS_KEYS = ("validation_loss", "val_loss", "eval_loss")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory of the run."""

    path: Path
    step: int
    validation_loss: float | None


def step_of(path: Path) -> int:
    match = _STEP.search(path.name)
    return int(match.group(1)) if match else 0


def validation_loss_of(path: Path) -> float | None:
    """The validation loss the trainer recorded in the checkpoint, when it did."""
    for name in LOSS_FILES:
        file = path / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for key in LOSS_KEYS:
            value = data.get(key) if isinstance(data, dict) else None
            if isinstance(value, (int, float)):
                return float(value)
    return None


def trained_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints the ``train`` stage recorded in ``RUN/training/run.json`` (they live in the
    trainer's storage, not under the run directory)."""
    record = run_dir / "training" / "run.json"
    if not record.is_file():
        return []
    run = json.loads(record.read_text())
    return [Path(c["path"]) for c in run.get("checkpoints", []) if c.get("path") and Path(c["path"]).is_dir()]


def model_ref(path: Path) -> str:
    """What the evaluator is sent: a registry name as is (the service materializes it in its own
    models cache, e.g. the untrained student), a directory as an absolute path."""
    return str(path) if is_registry_name(str(path)) else str(path.resolve())


def find_checkpoints(section: EvaluationSection, run_dir: Path) -> list[Checkpoint]:
    """The explicit ``checkpoints``, else ``RUN/checkpoints/step-*``, else the train stage's record;
    sorted by step."""
    paths = (
        [Path(p) for p in section.checkpoints]
        or [p for p in (run_dir / "checkpoints").glob("step-*") if p.is_dir() and not p.name.startswith(".")]
        or trained_checkpoints(run_dir)
    )
    return sorted(
        (Checkpoint(p, step_of(p), validation_loss_of(p)) for p in paths), key=lambda c: (c.step, str(c.path))
    )


def eval_datasets(refs: list[DatasetRef], generic_set: str | None) -> list[evaluator_pb2.EvalDataset]:
    out = [
        evaluator_pb2.EvalDataset(name=d.name, split=d.split, group=GROUPS.value(d.group), limit=d.limit or 0)
        for d in refs
    ]
    if generic_set:
        out.append(evaluator_pb2.EvalDataset(name=generic_set, split="test", group=evaluator_pb2.DATASET_GROUP_GENERIC))
    return out


def generation(section: EvaluationSection) -> evaluator_pb2.EvalGeneration:
    return evaluator_pb2.EvalGeneration(
        max_tokens=section.max_tokens,
        temperature=section.temperature,
        num_samples=section.num_samples,
        seed=section.seed,
        batch_size=section.batch_size,
    )


def build_requests(config: RunConfig, run_dir: Path) -> list[evaluator_pb2.EvaluateRequest]:
    """One Evaluate request per model the recipe names (checkpoints, teacher, OpenAI endpoint)."""
    section = config.evaluation
    if not section.datasets and not section.generic_set:
        raise InvalidArgument("evaluation.datasets", "no datasets to evaluate on")
    datasets = eval_datasets(section.datasets, section.generic_set)
    gen = generation(section)

    def make(
        model: common_pb2.ModelRef, label: str, tags: dict[str, str], step: int = 0
    ) -> evaluator_pb2.EvaluateRequest:
        return evaluator_pb2.EvaluateRequest(
            model=model,
            label=label,
            step=step,
            tags=tags,
            datasets=datasets,
            formats=section.formats,
            generation=gen,
            output_dir=str(run_dir),
            no_cache=section.no_cache,
        )

    student_tags = {"role": "student", "run": config.name, "num_samples": str(config.sampling.num_samples)}
    checkpoints = find_checkpoints(section, run_dir) if section.evaluate_checkpoints else []
    requests = [
        make(common_pb2.ModelRef(checkpoint_path=model_ref(c.path)), f"student {c.path.name}", student_tags, c.step)
        for c in checkpoints
    ]
    if section.evaluate_teacher:
        teacher = common_pb2.ModelRef(teacher_address=config.teacher.addresses[0])
        requests.append(make(teacher, "teacher", {"role": "teacher", "run": config.name}))
    if section.openai_url:
        endpoint = common_pb2.OpenAIEndpoint(base_url=section.openai_url, model=section.openai_model)
        label = f"{section.openai_model or 'model'} @ {section.openai_url}"
        requests.append(make(common_pb2.ModelRef(openai=endpoint), label, {"role": "student", "run": config.name}))
    if not requests:
        raise NotFound(
            f"nothing to evaluate: no checkpoints under {run_dir / 'checkpoints'} (or "
            "evaluation.evaluate_checkpoints is false) and neither evaluation.evaluate_teacher nor "
            "evaluation.openai_url is set"
        )
    return requests


def _rpc_error(err: grpc.aio.AioRpcError, address: str) -> CotdistillError:
    if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument("evaluation", err.details() or "invalid request")
    if err.code() == grpc.StatusCode.NOT_FOUND:
        return NotFound(err.details() or "not found")
    return Unavailable(f"evaluator at {address}: {err.code().name}: {err.details()}")


async def _evaluate_all(
    address: str, requests: list[evaluator_pb2.EvaluateRequest], timeout_s: float, console: Console
) -> list[evaluator_pb2.EvaluationResult]:
    results = []
    async with open_channel(address, round_robin=False) as channel:
        stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=False,
        ) as bar:
            for request in requests:
                task = bar.add_task(request.label, total=None, detail="")
                try:
                    async for reply in stub.Evaluate(request, timeout=timeout_s):
                        if reply.HasField("progress"):
                            p = reply.progress
                            bar.update(task, completed=p.done, total=p.total or None, detail=p.message)
                        else:
                            results.append(reply.result)
                except grpc.aio.AioRpcError as err:
                    raise _rpc_error(err, address) from err
    return results


def print_results(results: list[evaluator_pb2.EvaluationResult], console: Console) -> None:
    table = Table("model", "step", "dataset", "format", "group", "accuracy", "95% CI", "n", "cached")
    for r in results:
        for d in r.results:
            table.add_row(
                r.label,
                str(r.step),
                f"{d.dataset}/{d.split}",
                d.format,
                GROUPS.name(d.group, "unspecified"),
                f"{100 * d.accuracy:.1f}",
                f"[{100 * d.ci_low:.1f}, {100 * d.ci_high:.1f}]",
                f"{d.correct}/{d.total}",
                "yes" if d.cached else "no",
            )
    console.print(table)


def report(run_dir: Path, console: Console) -> Report:
    """Render RUN/report/ and say where it is; NotFound when the run has no results."""
    try:
        rendered = render_run_report(run_dir)
    except FileNotFoundError as err:
        raise NotFound(str(err)) from err
    except ValueError as err:
        raise InvalidArgument("eval", str(err)) from err
    console.print(f"report: [bold]{rendered.markdown}[/] ({len(rendered.plots)} plot(s) in {rendered.directory})")
    return rendered


def evaluate_stage(config: RunConfig, store: ArtifactStore, console: Console) -> None:
    """Pipeline stage ``evaluate``: every model of the recipe on every dataset x format, then the report."""
    _evaluate(config, store, console, render=True)


def _evaluate(config: RunConfig, store: ArtifactStore, console: Console, *, render: bool) -> None:
    if not store.is_local:
        raise InvalidArgument("output_dir", "the evaluate stage needs a local or mounted run directory")
    run_dir = Path(store.root)
    requests = build_requests(config, run_dir)
    results = asyncio.run(
        _evaluate_all(config.evaluation.evaluator_address, requests, config.evaluation.timeout_s, console)
    )
    print_results(results, console)
    if render:
        report(run_dir, console)


async def _select(address: str, request: evaluator_pb2.SelectRequest, timeout_s: float) -> evaluator_pb2.SelectResponse:
    async with open_channel(address, round_robin=False) as channel:
        stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
        try:
            reply: evaluator_pb2.SelectResponse = await stub.Select(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as err:
            raise _rpc_error(err, address) from err
    return reply


def select_stage(config: RunConfig, store: ArtifactStore, console: Console) -> None:
    """Pipeline stage ``select``: choose a checkpoint under the recipe's validation signal."""
    section = config.evaluation
    run_dir = Path(store.root)
    checkpoints = find_checkpoints(section, run_dir)
    if not checkpoints:
        raise NotFound(f"no checkpoints to select from under {run_dir / 'checkpoints'}")
    refs = section.selection_datasets or section.datasets
    request = evaluator_pb2.SelectRequest(
        candidates=[
            evaluator_pb2.Candidate(
                model=common_pb2.ModelRef(checkpoint_path=model_ref(c.path)),
                label=f"student {c.path.name}",
                step=c.step,
                validation_loss=c.validation_loss,
            )
            for c in checkpoints
        ],
        datasets=eval_datasets(refs, None) if section.selection_signal != "validation_loss" or refs else [],
        format=section.formats[0],
        signal=SIGNALS.value(section.selection_signal),
        id_weight=section.id_weight,
        generation=generation(section),
        output_dir=str(run_dir),
    )
    with console.status(f"selecting among {len(checkpoints)} checkpoint(s) by {section.selection_signal}"):
        reply = asyncio.run(_select(section.evaluator_address, request, section.timeout_s))
    table = Table("candidate", "step", "signal", "ID acc", "OOD acc", "val loss")
    for i, row in enumerate(reply.table):

        def opt(msg: evaluator_pb2.SelectionRow, name: str, pct: bool = True) -> str:
            if not msg.HasField(name):
                return "-"
            value = getattr(msg, name)
            return f"{100 * value:.1f}" if pct else f"{value:.4f}"

        mark = " [green](chosen)[/]" if i == reply.chosen_index else ""
        table.add_row(
            row.label + mark,
            str(row.step),
            f"{row.signal_value:.4f}",
            opt(row, "in_distribution_accuracy"),
            opt(row, "out_of_distribution_accuracy"),
            opt(row, "validation_loss", pct=False),
        )
    console.print(table)
    console.print(
        f"chosen: [bold]{reply.chosen.label}[/] ({reply.chosen.model.checkpoint_path}); table {reply.table_path}"
    )
    if list(run_dir.glob("eval/*.json")):
        report(run_dir, console)


def install(app: typer.Typer) -> None:
    """Add ``eval`` and ``report`` to the CLI and provide the ``evaluate`` and ``select`` stages."""
    stages.register("evaluate", evaluate_stage)
    stages.register("select", select_stage)
    console = Console(stderr=True, soft_wrap=True)

    @app.command("eval")
    def eval_command(
        config_file: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
        overrides: Annotated[list[str] | None, typer.Argument(help="key.path=value overrides.")] = None,
        select: Annotated[bool, typer.Option(help="Also select a checkpoint afterwards.")] = False,
    ) -> None:
        """Evaluate the recipe's models through the evaluator service and render the report."""
        config = load_config(RunConfig, config_file, overrides or [])
        store = ArtifactStore(f"{config.output_dir.rstrip('/')}/{config.name}")
        if not store.exists("config.yaml"):
            store.write_text(dump_config(config), "config.yaml")
        _evaluate(config, store, console, render=not select)  # select renders the report itself
        if select:
            select_stage(config, store, console)

    @app.command("report")
    def report_command(run_dir: Annotated[Path, typer.Argument(help="Run directory (holds eval/*.json).")]) -> None:
        """Render RUN/report/ (Markdown, JSON, PNG plots) from RUN/eval/*.json and print where it is."""
        rendered = report(run_dir, console)
        print(rendered.markdown)

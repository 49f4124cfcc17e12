"""``cotdistill train CONFIG [key=value ...]``: start a run on the trainer service and watch it.

A client of the trainer's gRPC API only (shared code never imports the service): the recipe's
``training`` section becomes a ``RunSpec``; ``StartRun`` returns the run id at once and
``WatchRun`` streams its events into a progress bar. A dropped stream is re-attached at the next
event sequence, so nothing is shown twice or missed. The same code is the ``train`` stage of
``cotdistill run``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cotdistill.common import enums, training_spec
from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.config import load_config
from cotdistill.common.errors import CotdistillError, InvalidArgument, NotFound, Unavailable
from cotdistill.common.grpc_client import open_channel
from cotdistill.common.models import is_registry_name
from cotdistill.pipeline import stages
from cotdistill.pipeline.run_config import RunConfig
from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc

# Reconnect attempts after a dropped WatchRun stream (the service restarting takes seconds).
MAX_RECONNECTS = 30
RECONNECT_DELAY_S = 2.0
TERMINAL = {trainer_pb2.RUN_STATE_SUCCEEDED, trainer_pb2.RUN_STATE_FAILED, trainer_pb2.RUN_STATE_CANCELLED}

STATES = enums.names(trainer_pb2.RunState)


class TrainingFailed(CotdistillError):
    """The run ended FAILED or CANCELLED; the message carries the service's reason."""


def _local_path(path: str) -> str:
    """Absolute form of a local path (the service may run elsewhere; URIs and registry model
    names pass through: the trainer resolves a name in its own models cache)."""
    if not path or "://" in path or is_registry_name(path):
        return path
    return str(Path(path).expanduser().resolve())


def default_train_paths(store: ArtifactStore) -> list[str]:
    """This run's filtered samples (``train/``), else its raw samples (``samples/``)."""
    for folder in ("train", "samples"):
        if store.list(folder, pattern="*.parquet") or store.list(folder, pattern="*.jsonl"):
            return [store.uri(folder)]
    return []


def build_spec(config: RunConfig, store: ArtifactStore) -> trainer_pb2.RunSpec:
    """The trainer ``RunSpec`` of a recipe's ``training`` section (no validation here: the service does it).

    The section has the RunSpec's shape, so this is protobuf's JSON mapping
    (:func:`cotdistill.common.training_spec.to_proto`) plus what the recipe fills in: local paths
    made absolute, this run's samples, the recipe's teacher replicas and evaluation datasets.
    """
    t = config.training
    spec = training_spec.to_proto(t, name=config.name)
    student, data = spec.student, spec.data
    student.model, student.tokenizer = _local_path(student.model), _local_path(student.tokenizer)
    data.teacher_tokenizer = _local_path(data.teacher_tokenizer)
    train_paths = [_local_path(p) for p in data.train_paths] or default_train_paths(store)
    validation_paths = [_local_path(p) for p in data.validation_paths]
    data.ClearField("train_paths")
    data.ClearField("validation_paths")
    data.train_paths.extend(train_paths)
    data.validation_paths.extend(validation_paths)
    if spec.HasField("on_policy") and not spec.on_policy.teacher_addresses:
        spec.on_policy.teacher_addresses.extend(config.teacher.addresses)
    _checkpoint_evaluation(config, spec.checkpoints)
    return spec


def _checkpoint_evaluation(config: RunConfig, checkpoints: trainer_pb2.CheckpointSpec) -> None:
    """CheckpointSpec.evaluator_*: the address (or, with ``evaluate_at_checkpoints``, the
    ``evaluation`` section's), datasets and format from the ``evaluation`` section unless given."""
    t, e = config.training, config.evaluation
    address = checkpoints.evaluator_address or (e.evaluator_address if t.evaluate_at_checkpoints else "")
    if not address:
        for name in ("evaluator_address", "evaluator_datasets", "evaluator_format", "evaluator_limit"):
            checkpoints.ClearField(name)
        return
    checkpoints.evaluator_address = address
    if not checkpoints.evaluator_datasets:
        checkpoints.evaluator_datasets.extend(f"{d.name}:{d.split}" for d in e.datasets)
    if not checkpoints.evaluator_format:
        checkpoints.evaluator_format = e.formats[0] if e.formats else ""


def _rpc_error(err: grpc.aio.AioRpcError, address: str) -> CotdistillError:
    details = err.details() or err.code().name
    if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
        field, _, message = details.partition(": ")
        return InvalidArgument(f"RunSpec {field}" if message else "RunSpec", message or details)
    if err.code() == grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"trainer at {address} is not reachable: {details}")
    return CotdistillError(f"trainer at {address}: {err.code().name}: {details}")


PHASE_LABELS = {
    "starting_ray": "starting Ray",
    "starting_workers": "starting the Ray Train workers",
    "loading_model": "loading the student",
    "loading_data": "reading and tokenizing the data",
    "first_step": "first step",
}
"""What the progress bar says for each ``PhaseEvent.name``."""


class _ProgressView:
    """Turns run events into a rich progress bar plus one line per notable event."""

    def __init__(self, console: Console, name: str) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.name = name
        self.task = self.progress.add_task(name, total=None, loss="-", tps="-")

    def __enter__(self) -> _ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def show(self, event: trainer_pb2.RunEvent) -> None:
        kind = event.WhichOneof("event")
        say = self.progress.console.print
        if kind == "phase":
            # Before the first step the bar says what the run is waiting for, not just 0/?.
            label = PHASE_LABELS.get(event.phase.name, event.phase.name.replace("_", " "))
            detail = f" ({event.phase.detail})" if event.phase.detail else ""
            self.progress.update(self.task, description=f"{self.name}: {label}")
            say(f"[dim]{label}{detail}, {event.phase.elapsed_s:.1f} s after start[/]")
        elif kind == "step":
            s = event.step
            self.progress.update(
                self.task,
                description=self.name,
                completed=s.step,
                total=s.total_steps or None,
                loss=f"{s.loss:.4f}",
                tps=f"{s.tokens_per_second:,.0f}",
            )
        elif kind == "checkpoint":
            c = event.checkpoint
            loss = f", validation loss {c.validation_loss:.4f}" if c.HasField("validation_loss") else ""
            say(f"checkpoint step {c.step}{loss}{' (best)' if c.is_best else ''}: {c.path}")
        elif kind == "evaluation":
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(event.evaluation.metrics.items()))
            say(f"evaluation step {event.evaluation.step}: {metrics}")
        elif kind == "state":
            name = STATES.name(event.state.state, "unspecified")
            say(f"state {name}{': ' + event.state.reason if event.state.reason else ''}")
        elif kind == "message":
            say(f"[dim]{event.message}[/]")


async def start_and_watch(
    address: str,
    spec: trainer_pb2.RunSpec,
    console: Console,
    on_started: Callable[[trainer_pb2.Run], None] | None = None,
) -> trainer_pb2.Run:
    """Start ``spec`` on the trainer at ``address`` and follow it to its end; returns the final record.

    Raises:
        InvalidArgument: the service rejected the spec (names the RunSpec field).
        Unavailable: the service cannot be reached (or stayed away through the reconnects).
    """
    async with open_channel(address, round_robin=False) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        try:
            run = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=spec), timeout=60)).run
        except grpc.aio.AioRpcError as err:
            raise _rpc_error(err, address) from None
        console.print(f"run [bold]{run.run_id}[/] accepted -> {run.output_dir}")
        if on_started is not None:
            on_started(run)
        next_sequence, failures = 1, 0
        with _ProgressView(console, spec.name or run.run_id) as view:
            while True:
                try:
                    request = trainer_pb2.WatchRunRequest(run_id=run.run_id, from_sequence=next_sequence)
                    async for response in stub.WatchRun(request):
                        view.show(response.event)
                        next_sequence = response.event.sequence + 1
                        failures = 0
                    final = (await stub.GetRun(trainer_pb2.GetRunRequest(run_id=run.run_id), timeout=30)).run
                    if final.state in TERMINAL:
                        return final
                except grpc.aio.AioRpcError as err:
                    if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                        raise _rpc_error(err, address) from None
                    failures += 1
                    if failures > MAX_RECONNECTS:
                        raise _rpc_error(err, address) from None
                    view.progress.console.print(f"[yellow]lost the trainer ({err.code().name}); reconnecting[/]")
                await asyncio.sleep(RECONNECT_DELAY_S)


def _finish(run: trainer_pb2.Run, console: Console) -> None:
    name = STATES.name(run.state, "unspecified")
    if run.state != trainer_pb2.RUN_STATE_SUCCEEDED:
        raise TrainingFailed(f"run {run.run_id} {name}: {run.error or 'no reason given'}")
    best = next((c for c in run.checkpoints if c.is_best), run.checkpoints[-1] if run.checkpoints else None)
    where = f"; checkpoint {best.path}" if best is not None else ""
    console.print(f"[green]run {run.run_id} succeeded[/] at step {run.step}{where}")


def train_stage(config: RunConfig, store: ArtifactStore, console: Console) -> None:
    """Pipeline stage ``train``: fine-tune the student and record the run under ``training/``."""
    spec = build_spec(config, store)

    def record(run: trainer_pb2.Run) -> None:
        store.write_text(json.dumps(MessageToDict(run), indent=2), "training", "run.json")

    run = asyncio.run(start_and_watch(config.training.trainer_address, spec, console, on_started=record))
    record(run)
    _finish(run, console)


Overrides = Annotated[
    list[str] | None, typer.Argument(help="key.path=value overrides, e.g. training.hyperparameters.max_steps=50.")
]


def train(
    config_file: Annotated[Path, typer.Argument(help="Recipe YAML file (its training section).")],
    overrides: Overrides = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Trainer host:port; default training.trainer_address.")
    ] = None,
) -> None:
    """Start a training run on the trainer service and watch it with a progress bar."""
    config = load_config(RunConfig, config_file, overrides or [])
    store = ArtifactStore(f"{config.output_dir.rstrip('/')}/{config.name}")
    console = Console(stderr=True, soft_wrap=True)
    spec = build_spec(config, store)
    try:
        run = asyncio.run(start_and_watch(address or config.training.trainer_address, spec, console))
    except KeyboardInterrupt:
        console.print("[yellow]stopped watching; the run goes on in the trainer service[/]")
        sys.exit(130)
    _finish(run, console)


def register(app: typer.Typer) -> None:
    """Add ``cotdistill train`` to the CLI and provide the pipeline's ``train`` stage."""
    app.command("train")(train)
    stages.register("train", train_stage)

"""Ray Train execution of a run: one ``TorchTrainer`` per run on the service's Ray runtime.

Driver side (:class:`RayExecutor`, on a manager thread): builds the scaling, failure and run
configs from the RunSpec and calls ``fit``. Worker side (:func:`train_worker`, in each Ray Train
worker): builds the training recipe with a :class:`RayReporter` and :class:`RayDistributedHooks`.

How the two talk:

* Checkpoints go through ``ray.train.report`` (every rank; rank 0 attaches a *pointer*: a tiny
  directory whose ``pointer.json`` names the checkpoint the recipe wrote), so Ray Train knows the
  latest checkpoint and hands it back through ``ray.train.get_checkpoint()`` when the worker
  group restarts after a failure or when the service re-runs the run after a restart (same
  ``RunConfig(name=run_id, storage_path=<artifacts>/runs)``). A pointer, not the directory
  itself: the recipe applies its own retention (last N + best), and Ray Train refuses to resume
  a run whose snapshot names a directory that retention removed.
* Progress events (steps, checkpoints, validation, messages) go from rank 0 to a small per-run
  :class:`RunChannel` actor that the driver drains a few times a second; Ray Train's report is a
  barrier across workers, too costly to call on every step.
* Cancellation is a flag on the channel; rank 0 polls it and the ranks agree through an
  all-reduce, so every rank leaves the loop at the same step (a lone rank leaving would hang the
  others in the next collective).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from cotdistill.common.errors import CotdistillError
from cotdistill.trainer.events import WorkerEvent, step_event
from cotdistill.trainer.manager import RunFailed
from cotdistill.trainer.ray_ownership import OWNER_ENV, Owner, reap, reap_stale, spawn_watchdog
from cotdistill.trainer.settings import TrainerSettings
from cotdistill.v1 import trainer_pb2

log = logging.getLogger(__name__)

# Ray's C++ failure handler would take over SIGTERM and abort the service: its own handler must
# stay in charge so a shutdown stops runs cleanly. Ray reads this once, at import.
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
# A lean Ray for a service that trains on its own machine; each can be overridden from the
# environment. Ray Train's controller notices that workers started or finished at its poll
# interval: 0.2 s instead of the default 2 s takes seconds off each run's start and end (a
# 5-step fit measured 13-21 s against 31 s). Ray Train's own metrics and the preemption watcher
# are not used here (the service exports its own metrics), and usage reporting needs a network.
LEAN_RAY_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "1",
}
for _key, _value in LEAN_RAY_ENV.items():
    os.environ.setdefault(_key, _value)
# glibc's allocator for training workers (see recipe.tune_allocator for the why and the figures).
WORKER_MALLOC_ENV = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TOP_PAD_": str(256 << 20),
    "MALLOC_TRIM_THRESHOLD_": "0",
}

DRAIN_INTERVAL_S = 0.25
STOP_POLL_INTERVAL_S = 0.5
WORKER_GROUP_STARTED = "worker group started"
POINTER_FILE = "pointer.json"
RAY_START_ATTEMPTS = 3
CHECKPOINT_COMMIT_TIMEOUT_S = 300.0


# --------------------------------------------------------------------------------------------
# The channel between workers and the service


class RunChannel:
    """Per-run mailbox actor: workers push events, the driver drains them and sets the stop flag."""

    def __init__(self) -> None:
        self._events: list[WorkerEvent] = []
        self._stop = False

    def push(self, events: list[WorkerEvent]) -> None:
        self._events.extend(events)

    def drain(self) -> list[WorkerEvent]:
        events, self._events = self._events, []
        return events

    def request_stop(self) -> None:
        self._stop = True

    def stop_requested(self) -> bool:
        return self._stop


# --------------------------------------------------------------------------------------------
# Worker side


class RayReporter:
    """The recipe's ``Reporter`` inside a Ray Train worker.

    Every rank calls every method the same number of times (the recipe is SPMD); only rank 0
    sends events, and ``on_checkpoint`` / ``should_stop`` are collectives.
    """

    def __init__(self, channel: Any, rank: int, world_size: int) -> None:
        self.channel = channel
        self.rank = rank
        self.world_size = world_size
        self.last_step = 0
        self.last_checkpoint_step = -1
        self.stopped = False
        self.save_started: float | None = None
        self._pending: WorkerEvent | None = None
        self._stop_flag = False
        self._last_poll = 0.0
        self._last_event_time = time.perf_counter()

    # Events -----------------------------------------------------------------------------------

    def push(self, event: WorkerEvent) -> None:
        if self.rank == 0:
            self.channel.push.remote([event])  # fire and forget; calls from one caller stay ordered

    def message(self, text: str) -> None:
        self.push(WorkerEvent(kind="message", text=text))

    def flush(self) -> None:
        """Wait until everything pushed so far reached the channel."""
        import ray

        if self.rank == 0:
            ray.get(self.channel.push.remote([]), timeout=30)

    # Reporter protocol ------------------------------------------------------------------------

    def on_step(self, step: int, total_steps: int, metrics: Mapping[str, float]) -> None:
        now = time.perf_counter()
        event = step_event(step, total_steps, metrics)
        # The recipe reports a rate; the token counter wants an amount over the same window.
        event["tokens"] = int(event.get("tokens_per_second", 0.0) * (now - self._last_event_time))
        self.last_step = int(step)
        self._last_event_time = now
        self.push(event)

    def on_checkpoint(self, step: int, path: str, validation_loss: float | None, is_best: bool) -> None:
        # Rank 0 only (the recipe writes on rank 0); the collective report follows in commit().
        self._pending = WorkerEvent(
            kind="checkpoint", step=int(step), path=str(path), validation_loss=validation_loss, is_best=bool(is_best)
        )

    def commit_checkpoint(self, step: int, path: str) -> None:
        """Register the checkpoint the recipe just wrote with Ray Train (every rank calls this).

        Rank 0 reports a pointer directory (``pointer.json``: path and step); the other ranks
        report no checkpoint, as Ray Train expects.
        """
        import ray.train
        from ray.train import Checkpoint, CheckpointConsistencyMode

        pending, self._pending = self._pending, None
        metrics: dict[str, float] = {"step": float(step)}
        if pending is not None and pending.get("validation_loss") is not None:
            metrics["validation_loss"] = float(pending["validation_loss"] or 0.0)
        if self.rank == 0 and path:
            with tempfile.TemporaryDirectory(prefix="cotdistill-pointer-") as pointer_dir:
                Path(pointer_dir, POINTER_FILE).write_text(json.dumps({"path": str(path), "step": int(step)}))
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(pointer_dir))
        else:
            ray.train.report(metrics, checkpoint=None)
        if self.rank == 0:
            # report() hands the checkpoint to the controller asynchronously; a worker killed in
            # between would restart from the previous one. Training on only once Ray Train has
            # committed it keeps the promise: a failure redoes at most one checkpoint interval.
            ray.train.get_all_reported_checkpoints(
                consistency_mode=CheckpointConsistencyMode.COMMITTED, timeout_s=CHECKPOINT_COMMIT_TIMEOUT_S
            )
        self.last_checkpoint_step = int(step)
        if pending is not None:
            started = self.save_started if self.save_started is not None else self._last_event_time
            pending["duration_s"] = time.perf_counter() - started
            self.push(pending)
        self._last_event_time = time.perf_counter()

    def on_phase(self, name: str, detail: str) -> None:
        self.push(WorkerEvent(kind="phase", phase=name, text=detail))

    def on_validation(self, step: int, metrics: Mapping[str, float]) -> None:
        self._last_event_time = time.perf_counter()
        self.push(WorkerEvent(kind="evaluation", step=int(step), metrics={k: float(v) for k, v in metrics.items()}))

    def should_stop(self) -> bool:
        if self.stopped:
            return True
        if self.rank == 0:
            now = time.monotonic()
            if now - self._last_poll >= STOP_POLL_INTERVAL_S:
                import ray

                self._stop_flag = bool(ray.get(self.channel.stop_requested.remote(), timeout=30))
                self._last_poll = now
        flag = self._stop_flag
        if self.world_size > 1:
            import torch
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                votes = torch.tensor([1 if flag else 0], dtype=torch.int32)
                dist.all_reduce(votes, op=dist.ReduceOp.MAX)
                flag = bool(votes.item())
        self.stopped = flag
        return flag


class RayDistributedHooks:
    """The recipe's ``DistributedHooks`` filled from ``ray.train.torch``."""

    def __init__(self, rank: int, world_size: int, strategy: str, device: Any) -> None:
        self.rank = rank
        self.world_size = world_size
        self.strategy = strategy  # "ddp" or "fsdp"
        self.device = device  # Ray Train's choice: this worker's GPU, or the CPU

    def prepare_model(self, model: Any) -> Any:
        import ray.train.torch

        return ray.train.torch.prepare_model(model, parallel_strategy=self.strategy)

    def prepare_data_loader(self, loader: Any) -> Any:
        import ray.train.torch

        return ray.train.torch.prepare_data_loader(loader)


class WorkerError(RuntimeError):
    """A project error raised in a worker, in a form that survives pickling back to the driver.

    The project's errors take several constructor arguments, which exception pickling does not
    replay: sent as they are, the driver would see a TypeError instead of the reason.
    """


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: build the recipe, resume from Ray's latest checkpoint, train.

    ``config`` keys: ``spec`` (serialized RunSpec), ``output_dir`` (the run's directory),
    ``channel`` (the RunChannel handle).
    """
    try:
        _train_worker(config)
    except CotdistillError as err:
        raise WorkerError(f"{type(err).__name__}: {err}") from None


def _train_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    from cotdistill.trainer.config import RecipeConfig
    from cotdistill.trainer.recipe import TrainRecipe

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    reporter = RayReporter(config["channel"], rank, world_size)
    spec = trainer_pb2.RunSpec.FromString(config["spec"])
    strategy = "fsdp" if spec.scaling.strategy == trainer_pb2.PARALLEL_STRATEGY_FSDP else "ddp"
    hooks = RayDistributedHooks(rank, world_size, strategy, ray.train.torch.get_device())

    # Every rank names its process so operators (and the fault test) can find a worker.
    config["channel"].push.remote(
        [WorkerEvent(kind="message", text=f"worker rank {rank}/{world_size} pid {os.getpid()}")]
    )
    # Validated at StartRun, and again by the recipe's setup (files may have gone since).
    recipe_config = RecipeConfig.from_proto(spec, config["output_dir"])
    pointer = read_pointer(ray.train.get_checkpoint())
    resume_from = pointer[0] if pointer else None
    if pointer:
        # Ray Train commits a checkpoint before rank 0 announces it; a group killed in between
        # resumes from a checkpoint the run's record never heard of. Announce it (again) first.
        reporter.push(WorkerEvent(kind="checkpoint", step=pointer[1], path=pointer[0], is_best=False, recovered=True))
    start = f"resuming from {resume_from}" if resume_from else "starting from the base model"
    reporter.message(f"{WORKER_GROUP_STARTED}: {world_size} worker(s), {strategy}; {start}")
    if reporter.should_stop():
        reporter.push(WorkerEvent(kind="finished", step=0, stopped=True))
        reporter.flush()
        return

    recipe = TrainRecipe(recipe_config, reporter, cast(Any, hooks))
    _wrap_saves(recipe, reporter)
    recipe.setup(resume_from=resume_from)
    try:
        recipe.train()
        step = int(recipe.state.step)
        if reporter.stopped and step > 0 and reporter.last_checkpoint_step != step:
            # Stopped between checkpoints: keep the work done so far (cancel and shutdown promise it).
            recipe.save_checkpoint(step)
    finally:
        recipe.cleanup()
    reporter.push(WorkerEvent(kind="finished", step=step, stopped=reporter.stopped))
    reporter.flush()


def _wrap_saves(recipe: Any, reporter: RayReporter) -> None:
    """Time each ``save_checkpoint`` and follow it with the collective Ray Train report.

    The recipe writes on rank 0 only and returns "" elsewhere; every rank must still call
    ``ray.train.report`` once per checkpoint, so the report happens here, on all ranks.
    """
    original: Callable[..., Any] = recipe.save_checkpoint

    def save_and_report(step: int, *args: Any, **kwargs: Any) -> Any:
        reporter.save_started = time.perf_counter()
        try:
            path = original(step, *args, **kwargs)
            reporter.commit_checkpoint(step, str(path or ""))
            return path
        finally:
            reporter.save_started = None

    recipe.save_checkpoint = save_and_report


def read_pointer(checkpoint: Any) -> tuple[str, int] | None:
    """(directory, step) of the recipe checkpoint a Ray Train pointer checkpoint names.

    Raises:
        FileNotFoundError: the pointer names a directory that no longer exists.
    """
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        pointer = json.loads(Path(directory, POINTER_FILE).read_text())
    target = str(pointer["path"])
    if not Path(target).is_dir():
        raise FileNotFoundError(f"the latest checkpoint {target} (step {pointer.get('step')}) is gone")
    return target, int(pointer.get("step", 0))


# --------------------------------------------------------------------------------------------
# Driver side


class RayExecutor:
    """Runs runs on one Ray runtime per service process (started or joined on first use)."""

    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._started = False
        self._local = not settings.ray_address
        self._owner: Owner | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        if self._local:
            # A previous service on these artifacts may have died without stopping its Ray.
            reap_stale(settings.artifacts_path)

    def ensure_ray(self) -> None:
        """Start (local) or join (cluster) the Ray runtime once per process (a few attempts)."""
        import ray

        with self._lock:
            if self._started and ray.is_initialized():
                return
            for attempt in range(1, RAY_START_ATTEMPTS + 1):
                try:
                    self._init()
                    break
                except Exception:
                    # Seen on a busy shared machine: now and then a local GCS or raylet never comes
                    # up (no log at all) while the next attempt starts in seconds.
                    if attempt == RAY_START_ATTEMPTS:
                        raise
                    log.warning("ray start-up failed (attempt %d); retrying", attempt, exc_info=True)
                    with contextlib.suppress(Exception):
                        ray.shutdown()
                    if self._owner is not None:
                        reap(self._owner)  # a half-started GCS or raylet of the failed attempt
            self._started = True
            log.info("ray runtime ready: %s", ray.cluster_resources())

    def _init(self) -> None:
        import ray

        if self._local:
            # Ray's 30 s default for the GCS to come up is too short on a busy small machine.
            os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "60")
            # Every process of this runtime inherits the owner marker (see ray_ownership).
            if self._owner is None:
                self._owner = Owner.current(self.settings.artifacts_path)
            os.environ[OWNER_ENV] = self._owner.marker
            # Ray renames its processes (setproctitle); by default that overwrites the environment
            # block where the marker lives. SPT_NOENV keeps it (titles stay within argv's length).
            os.environ["SPT_NOENV"] = "1"
            # Training workers allocate and free a batch's activations every step: few arenas, and
            # tensors up to 32 MiB reused from the heap instead of mapped and faulted in afresh
            # (see recipe.tune_allocator, which does the same in a running process).
            for key, value in WORKER_MALLOC_ENV.items():
                os.environ.setdefault(key, value)
            if self._watchdog is None or self._watchdog.poll() is not None:
                self._watchdog = spawn_watchdog(self._owner)
            # "local" always starts a fresh runtime, never a stale cluster left in RAY_TMPDIR;
            # every Ray server of a local runtime listens on loopback only.
            ray.init(
                address="local",
                _node_ip_address="127.0.0.1",
                num_cpus=self.settings.ray_num_cpus,
                include_dashboard=False,
                object_store_memory=self.settings.ray_object_store_mb << 20,
                configure_logging=False,
                log_to_driver=False,
            )
        else:
            ray.init(address=self.settings.ray_address, configure_logging=False, log_to_driver=False)

    def start(self) -> None:
        self.ensure_ray()

    def close(self) -> None:
        """Shut Ray down; for a local runtime also end every process it left (agents, workers)."""
        import ray

        with self._lock:
            if self._started and ray.is_initialized():
                ray.shutdown()
            self._started = False
            if self._owner is not None:
                leftovers = reap(self._owner, term_first=True)
                if leftovers:
                    log.info("stopped %d Ray processes that outlived ray.shutdown()", len(leftovers))
            if self._watchdog is not None and self._watchdog.poll() is None:
                self._watchdog.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._watchdog.wait(timeout=5)

    def execute(self, run: trainer_pb2.Run, emit: Callable[[WorkerEvent], None], stop: threading.Event) -> None:
        import ray
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        from ray.train.v2.api.exceptions import TrainingFailedError

        if not self._started:
            emit(WorkerEvent(kind="phase", phase="starting_ray", text="local" if self._local else "join"))
        try:
            self.ensure_ray()
        except Exception as err:
            raise RunFailed(f"could not start the Ray runtime: {_first_line(str(err))}") from None
        scaling = run.spec.scaling
        use_gpu = scaling.use_gpu
        resources = ray.cluster_resources()
        if use_gpu and resources.get("GPU", 0) == 0:
            if not self.settings.gpu_fallback_to_cpu:
                raise RunFailed("scaling.use_gpu is set but the Ray runtime has no GPUs")
            use_gpu = False
            emit(WorkerEvent(kind="message", text="no GPUs in the Ray runtime: training on CPU (gloo) instead"))
        per_worker = {"CPU": float(scaling.cpus_per_worker or 1.0)}
        if use_gpu:
            per_worker["GPU"] = float(scaling.gpus_per_worker or 1.0)
        needed = per_worker["CPU"] * max(1, scaling.num_workers)
        if self._local and needed > resources.get("CPU", 0):
            # A local runtime never grows: waiting would hang the run forever.
            raise RunFailed(
                f"scaling needs {needed:g} CPUs ({scaling.num_workers} workers x {per_worker['CPU']:g}) but the "
                f"local Ray runtime has {resources.get('CPU', 0):g}; lower scaling.num_workers or cpus_per_worker"
            )

        channel = ray.remote(num_cpus=0)(RunChannel).remote()
        output_dir = Path(run.output_dir)
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={"spec": run.spec.SerializeToString(), "output_dir": str(output_dir), "channel": channel},
            scaling_config=ScalingConfig(
                num_workers=max(1, scaling.num_workers), use_gpu=use_gpu, resources_per_worker=per_worker
            ),
            run_config=RunConfig(
                name=run.run_id,
                storage_path=str(output_dir.parent),
                failure_config=FailureConfig(max_failures=int(scaling.max_failures)),
                # Ray keeps the last two pointers; the recipe applies retention (last N + best)
                # to the checkpoint directories themselves.
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
        )
        pump = _Pump(channel, emit, stop)
        pump.start()
        emit(
            WorkerEvent(
                kind="phase",
                phase="starting_workers",
                text=f"{max(1, scaling.num_workers)} worker(s) x {per_worker['CPU']:g} CPU"
                + (f", {per_worker['GPU']:g} GPU" if use_gpu else ""),
            )
        )
        try:
            trainer.fit()
        except TrainingFailedError as err:
            raise RunFailed(_failure_reason(err)) from None
        except ray.exceptions.RayError as err:
            raise RunFailed(f"Ray error: {_first_line(str(err))}") from None
        finally:
            pump.finish()
            with contextlib.suppress(Exception):
                ray.kill(cast(Any, channel))


class _Pump(threading.Thread):
    """Moves events from the channel actor to the manager and the stop flag the other way."""

    def __init__(self, channel: Any, emit: Callable[[WorkerEvent], None], stop: threading.Event) -> None:
        super().__init__(name="run-events", daemon=True)
        self.channel, self.emit, self.stop = channel, emit, stop
        self._done = threading.Event()
        self._stop_sent = False

    def run(self) -> None:
        while not self._done.wait(DRAIN_INTERVAL_S):
            self._once()

    def _once(self) -> None:
        import ray

        try:
            if self.stop.is_set() and not self._stop_sent:
                ray.get(self.channel.request_stop.remote(), timeout=30)
                self._stop_sent = True
            for event in ray.get(self.channel.drain.remote(), timeout=30):
                self.emit(event)
        except Exception:  # a slow or restarted actor must not kill the pump; the next tick retries
            log.warning("could not drain run events", exc_info=True)

    def finish(self) -> None:
        self._done.set()
        self.join(timeout=10)
        self._once()  # whatever arrived between the last tick and the end of fit


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else text


def _failure_reason(err: Exception) -> str:
    """A one-line reason from Ray Train's error: the workers' own exception where there is one."""
    failures = getattr(err, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        rank, cause = sorted(failures.items())[0]
        inner = getattr(cause, "cause", None) or cause
        if isinstance(inner, WorkerError):
            return f"worker {rank} failed: {inner}"
        return f"worker {rank} failed: {type(inner).__name__}: {_last_line(str(inner))}"
    return _first_line(str(err))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def executor_env() -> Mapping[str, str]:
    """Ray settings this process runs with (for the start-up log)."""
    return {k: v for k, v in os.environ.items() if k.startswith("RAY_")}

"""Run lifecycle: accept, queue, drive, cancel, watch, and take over runs after a restart.

The manager owns the run store and a small thread pool (one thread per training run, at most
``max_concurrent_runs``); each thread calls the executor (Ray Train) and turns what the workers
report into record updates and log events. RPC handlers on the asyncio loop only read the store
and wait for change notifications, so a long ``fit`` never blocks the gRPC loop.

A run that was PENDING or RUNNING when the service stopped (or died) is resumed when the service
starts again: Ray Train re-attaches to the run's storage directory and the workers restore the
latest checkpoint. When its spec no longer validates (data or model gone) it is marked FAILED
with that reason instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cotdistill.common.errors import FieldError, InvalidArgument, NotFound, Unavailable
from cotdistill.common.path_policy import PathRoots
from cotdistill.trainer.checkpoint_eval import (
    EVALUATE_TIMEOUT_S,
    EvaluationFailed,
    evaluate_checkpoint,
    validate_checkpoint_eval,
    wants_evaluation,
)
from cotdistill.trainer.events import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    WorkerEvent,
    checkpoint_info,
    message_event,
    now,
    state_event,
    state_name,
    to_proto,
)
from cotdistill.trainer.metrics import TrainerMetrics
from cotdistill.trainer.runs import RunStore, new_run_id
from cotdistill.trainer.settings import TrainerSettings
from cotdistill.v1 import trainer_pb2

log = logging.getLogger(__name__)

# Watchers re-check the store at least this often even without a notification (belt and braces
# against a lost wake-up; the notification is the normal path).
WATCH_POLL_S = 2.0
# How long a watcher of an ended run waits for the state event that follows the record's change.
TERMINAL_EVENT_WAIT_S = 0.5
# How often CancelRun looks whether the workers have stopped.
CANCEL_POLL_S = 0.05
MAX_WORKERS = 1024
MAX_FAILURES = 100


class RunFailed(Exception):
    """Training ended with an error; the message is the reason shown to users."""


class Executor(Protocol):
    """Runs one training run to its end (blocking; called on a manager thread)."""

    def execute(self, run: trainer_pb2.Run, emit: Callable[[WorkerEvent], None], stop: threading.Event) -> None:
        """Train ``run`` until done or until ``stop`` is set (then stop before the next micro-batch).

        Raises:
            RunFailed: training failed after the retries the spec allows.
        """

    def start(self) -> None:
        """Bring the runtime up ahead of the first run (e.g. start Ray)."""

    def close(self) -> None:
        """Release the runtime (e.g. shut Ray down)."""


SpecValidator = Callable[[trainer_pb2.RunSpec, Path], None]


def validate_recipe(spec: trainer_pb2.RunSpec, output_dir: Path) -> None:
    """The recipe's own validation (model and data on disk, ranges); raises InvalidArgument."""
    from cotdistill.trainer.config import RecipeConfig

    RecipeConfig.from_proto(spec, str(output_dir)).validate()


def confine_spec_paths(spec: trainer_pb2.RunSpec, roots: PathRoots) -> None:
    """Check that every path of ``spec`` lies under ``roots`` and pin it to its resolved form.

    Raises PermissionDenied naming the RunSpec field. A model or tokenizer value that is neither
    a path nor anything on disk (a bare name) is left to the recipe's validation, which refuses it.
    """
    student, data = spec.student, spec.data
    for owner, name, where in (
        (student, "model", "student.model"),
        (student, "tokenizer", "student.tokenizer"),
        (data, "teacher_tokenizer", "data.teacher_tokenizer"),
    ):
        value = getattr(owner, name)
        if value and ("/" in value or os.path.lexists(value)):
            setattr(owner, name, roots.confine(value, where))
    for name in ("train_paths", "validation_paths"):
        paths = getattr(data, name)
        confined = [roots.confine(p, f"data.{name}[{i}]") for i, p in enumerate(paths)]
        del paths[:]
        paths.extend(confined)


def apply_scaling_defaults(spec: trainer_pb2.RunSpec, settings: TrainerSettings) -> None:
    """Fill unset scaling fields from the settings and check their ranges (field-named errors)."""
    scaling = spec.scaling
    if scaling.num_workers > MAX_WORKERS:
        raise InvalidArgument("scaling.num_workers", f"at most {MAX_WORKERS}; got {scaling.num_workers}")
    if scaling.max_failures > MAX_FAILURES:
        raise InvalidArgument("scaling.max_failures", f"at most {MAX_FAILURES}; got {scaling.max_failures}")
    for name in ("gpus_per_worker", "cpus_per_worker"):
        value = getattr(scaling, name)
        if value < 0 or not math.isfinite(value):
            raise InvalidArgument(f"scaling.{name}", f"must be > 0 (0 means the default); got {value}")
    if scaling.gpus_per_worker and not scaling.use_gpu:
        raise InvalidArgument("scaling.gpus_per_worker", "set, but use_gpu is false")
    if scaling.strategy == trainer_pb2.PARALLEL_STRATEGY_FSDP and spec.student.HasField("lora"):
        raise InvalidArgument("scaling.strategy", "FSDP with LoRA adapters is not supported; use DDP")
    scaling.num_workers = scaling.num_workers or settings.default_num_workers
    capacity = settings.ray_num_cpus or os.cpu_count() or 1
    if not scaling.cpus_per_worker:
        # Ray gives each worker as many torch threads as it has CPUs: one worker alone on a local
        # runtime trains on all of them rather than one.
        local_share = float(max(1, capacity // scaling.num_workers)) if not settings.ray_address else 1.0
        scaling.cpus_per_worker = settings.default_cpus_per_worker or local_share
    if scaling.use_gpu:
        scaling.gpus_per_worker = scaling.gpus_per_worker or 1.0
    if not settings.ray_address:
        # A local Ray never grows: a run wider than the machine would wait forever for workers.
        needed = scaling.num_workers * scaling.cpus_per_worker
        if needed > capacity:
            raise InvalidArgument(
                "scaling.num_workers",
                f"{scaling.num_workers} workers x {scaling.cpus_per_worker:g} CPUs need {needed:g} CPUs; the local "
                f"Ray runtime has {capacity}. Lower num_workers or cpus_per_worker, or train on a Ray cluster "
                "(COTDISTILL_TRAINER_RAY_ADDRESS)",
            )
    if scaling.strategy == trainer_pb2.PARALLEL_STRATEGY_UNSPECIFIED:
        scaling.strategy = trainer_pb2.PARALLEL_STRATEGY_DDP


@dataclass
class _Active:
    """What the manager tracks for a run that has a thread (queued or training)."""

    stop: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""  # set by CancelRun; empty when stopping for a service shutdown
    shutdown: bool = False
    finished_step: int = -1
    stopped_early: bool = False
    finished: threading.Event = field(default_factory=threading.Event)  # the workers said "finished"
    future: concurrent.futures.Future[None] | None = None
    spec: trainer_pb2.RunSpec | None = None
    # Background checkpoint evaluations (on the manager's loop), in checkpoint order; one at a
    # time per run so a slow evaluator does not pile up requests.
    evaluations: list[concurrent.futures.Future[None]] = field(default_factory=list)
    evaluation_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def cancel_evaluations(self) -> None:
        for future in self.evaluations:
            future.cancel()


class RunManager:
    """Accepts and drives runs; the servicer is a thin gRPC layer over it."""

    def __init__(
        self,
        settings: TrainerSettings,
        executor: Executor,
        metrics: TrainerMetrics,
        validate: SpecValidator = validate_recipe,
        store: RunStore | None = None,
    ) -> None:
        self.settings = settings
        self.root = settings.artifacts_path
        self.roots = settings.read_roots()
        self.store = store or RunStore(self.root / "trainer.sqlite")
        self.executor = executor
        self.metrics = metrics
        self.validate = validate
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.max_concurrent_runs, thread_name_prefix="run"
        )
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._draining = False
        self._created: dict[str, float] = {}  # run id -> StartRun time (s), for PhaseEvent.elapsed_s

    # Start-up and shutdown -------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop and take over runs left active by a previous process."""
        self._loop = asyncio.get_running_loop()
        for run in self.store.active():
            self._take_over(run)
        self._refresh_counts()

    def _take_over(self, run: trainer_pb2.Run) -> None:
        try:
            # The roots may have changed since the run was accepted: check its paths again.
            confine_spec_paths(trainer_pb2.RunSpec.FromString(run.spec.SerializeToString()), self.roots)
            self.validate(run.spec, Path(run.output_dir))
        except (FieldError, NotFound) as err:
            self._finish(run.run_id, trainer_pb2.RUN_STATE_FAILED, f"cannot resume after a service restart: {err}")
            return
        self._log(message_event(run.run_id, "service restarted; resuming from the latest checkpoint"))
        self._submit(run.run_id, resumed=True)

    def stop_watchers(self) -> None:
        """End every WatchRun stream with UNAVAILABLE (clients re-attach at their next sequence).

        Called first on shutdown: open streams would otherwise hold the gRPC drain for the whole
        grace period before the runs even get the stop request.
        """
        self._draining = True
        for run_id in list(self._watchers):
            self._wake(run_id)

    async def shutdown(self, grace_s: float) -> None:
        """Stop every active run before its next micro-batch (they stay active and resume on restart)."""
        self._closing = True
        self.stop_watchers()
        with self._lock:
            active = list(self._active.items())
        for run_id, entry in active:
            entry.shutdown = True
            entry.stop.set()
            entry.cancel_evaluations()
            self._log(message_event(run_id, "service stopping; the run resumes when the service restarts"))
        futures = [e.future for _, e in active if e.future is not None]
        if futures:
            await asyncio.to_thread(concurrent.futures.wait, futures, timeout=max(grace_s, 1.0))
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.executor.close)
        self.store.close()

    # Requests --------------------------------------------------------------------------------

    def start_run(self, spec: trainer_pb2.RunSpec) -> trainer_pb2.Run:
        """Validate ``spec``, record the run as PENDING and queue it.

        Raises:
            InvalidArgument: naming the offending RunSpec field.
            PermissionDenied: a path of the spec lies outside the service's roots.
            NotFound: a model directory or data file named by the spec is not there.
        """
        if self._closing:
            raise InvalidArgument("spec", "the service is shutting down; start the run again after it restarts")
        spec = trainer_pb2.RunSpec.FromString(spec.SerializeToString())
        confine_spec_paths(spec, self.roots)
        apply_scaling_defaults(spec, self.settings)
        validate_checkpoint_eval(spec)
        run_id = new_run_id()
        output_dir = self.root / "runs" / run_id
        self.validate(spec, output_dir)
        run = trainer_pb2.Run(
            run_id=run_id,
            spec=spec,
            state=trainer_pb2.RUN_STATE_PENDING,
            created_at=now(),
            output_dir=str(output_dir),
        )
        output_dir.mkdir(parents=True, exist_ok=True)
        self.store.create(run)
        self._log(state_event(run_id, trainer_pb2.RUN_STATE_PENDING))
        self._submit(run_id, resumed=False)
        self._refresh_counts()
        log.info("run %s accepted (%s)", run_id, spec.name or "unnamed")
        return run

    async def cancel(self, run_id: str) -> trainer_pb2.Run:
        """Stop ``run_id``, keeping its latest checkpoint; idempotent for ended runs."""
        run = self.store.get(run_id)
        if run.state in TERMINAL_STATES:
            return run
        with self._lock:
            entry = self._active.get(run_id)
        reason = "cancelled by request"
        if entry is None or entry.future is None or not entry.future.running():
            # Still queued (or orphaned): nothing is training, so it ends now.
            if entry is not None:
                entry.cancel_reason = reason
                entry.stop.set()
            return self._finish(run_id, trainer_pb2.RUN_STATE_CANCELLED, reason)
        entry.cancel_reason = reason
        entry.stop.set()
        self._log(message_event(run_id, "cancel requested; stopping at the next micro-batch"))
        future = entry.future
        deadline = time.monotonic() + self.settings.cancel_grace_s
        # The run is over once its workers report that they stopped (after saving the work done);
        # Ray Train's tear-down of the worker group can take seconds more and happens behind it.
        while not (future.done() or (entry.finished.is_set() and entry.stopped_early)):
            if time.monotonic() >= deadline:
                return self._finish(
                    run_id,
                    trainer_pb2.RUN_STATE_CANCELLED,
                    f"{reason}; workers did not stop within {self.settings.cancel_grace_s:g} s",
                )
            await asyncio.sleep(CANCEL_POLL_S)
        if not future.done():  # stopped early: the record ends now, Ray tears down behind it
            step = self.store.get(run_id).step
            return self._finish(run_id, trainer_pb2.RUN_STATE_CANCELLED, f"{reason} at step {step}")
        return self.store.get(run_id)

    async def watch(self, run_id: str, from_sequence: int) -> AsyncIterator[trainer_pb2.RunEvent]:
        """Events of ``run_id`` from ``from_sequence`` on; ends after the run's terminal event."""
        self.store.get(run_id)  # NotFound before the stream starts
        wake = asyncio.Event()
        self._watchers.setdefault(run_id, set()).add(wake)
        next_sequence = max(1, from_sequence)
        ended = False  # the terminal state event was streamed
        waited_for_end = False
        try:
            while True:
                if self._draining:
                    raise Unavailable(
                        f"the trainer is shutting down; watch again from sequence {next_sequence} once it is back"
                    )
                wake.clear()
                events = self.store.events(run_id, next_sequence)
                for event in events:
                    yield event
                    next_sequence = event.sequence + 1
                    ended = ended or (event.HasField("state") and event.state.state in TERMINAL_STATES)
                if events:
                    continue
                if ended:
                    return
                timeout = WATCH_POLL_S
                if self.store.get(run_id).state in TERMINAL_STATES:
                    # The record turns terminal just before its state event is logged: wait for
                    # that event once (it wakes us), unless the watcher started past it.
                    if waited_for_end:
                        return
                    waited_for_end, timeout = True, TERMINAL_EVENT_WAIT_S
                try:
                    await asyncio.wait_for(wake.wait(), timeout=timeout)
                except TimeoutError:
                    pass
        finally:
            watchers = self._watchers.get(run_id)
            if watchers is not None:
                watchers.discard(wake)
                if not watchers:
                    self._watchers.pop(run_id, None)

    # Driving a run (manager threads) -----------------------------------------------------------

    def _submit(self, run_id: str, resumed: bool) -> None:
        entry = _Active()
        with self._lock:
            self._active[run_id] = entry
        entry.future = self._pool.submit(self._drive, run_id, entry, resumed)

    def _drive(self, run_id: str, entry: _Active, resumed: bool) -> None:
        try:
            self._drive_inner(run_id, entry, resumed)
        except Exception:  # the thread must never die silently: the run would hang in RUNNING
            log.exception("run %s: unexpected error in the run thread", run_id)
            if not entry.shutdown:  # errors while the service tears down leave the run to resume
                self._finish(run_id, trainer_pb2.RUN_STATE_FAILED, "internal error in the trainer service; see its log")
        finally:
            with self._lock:
                self._active.pop(run_id, None)
            self._created.pop(run_id, None)
            self.metrics.forget_run(run_id)

    def _drive_inner(self, run_id: str, entry: _Active, resumed: bool) -> None:
        run = self.store.get(run_id)
        if run.state in TERMINAL_STATES or entry.stop.is_set():
            return  # cancelled while queued, or the service is stopping

        def mark_running(r: trainer_pb2.Run) -> None:
            r.state = trainer_pb2.RUN_STATE_RUNNING
            if not r.HasField("started_at"):
                r.started_at.CopyFrom(now())

        run = self.store.update(run_id, mark_running)
        entry.spec = run.spec
        reason = "resumed after a service restart" if resumed else ""
        self._log(state_event(run_id, trainer_pb2.RUN_STATE_RUNNING, reason))
        self._refresh_counts()

        def emit(event: WorkerEvent) -> None:
            self._on_worker_event(run_id, entry, event)

        try:
            self.executor.execute(run, emit, entry.stop)
        except RunFailed as err:
            entry.cancel_evaluations()
            if entry.cancel_reason:
                self._finish(run_id, trainer_pb2.RUN_STATE_CANCELLED, entry.cancel_reason)
            elif entry.shutdown:
                log.info("run %s interrupted by shutdown: %s", run_id, err)
            else:
                self._finish(run_id, trainer_pb2.RUN_STATE_FAILED, str(err))
            return
        if entry.cancel_reason or entry.shutdown:
            entry.cancel_evaluations()
        else:
            self._await_evaluations(run_id, entry)
        if entry.cancel_reason:
            step = self.store.get(run_id).step
            self._finish(run_id, trainer_pb2.RUN_STATE_CANCELLED, f"{entry.cancel_reason} at step {step}")
        elif entry.shutdown or (entry.stop.is_set() and entry.stopped_early):
            log.info("run %s stopped for shutdown at step %d; resumes on restart", run_id, entry.finished_step)
        elif entry.finished_step < 0:
            self._finish(run_id, trainer_pb2.RUN_STATE_FAILED, "training ended without the workers reporting the end")
        else:
            self._finish(run_id, trainer_pb2.RUN_STATE_SUCCEEDED)

    def _on_worker_event(self, run_id: str, entry: _Active, event: WorkerEvent) -> None:
        kind = event["kind"]
        if kind == "finished":
            entry.finished_step = int(event.get("step", 0))
            entry.stopped_early = bool(event.get("stopped", False))
            entry.finished.set()
            return
        if kind == "step":
            step, total = int(event.get("step", 0)), int(event.get("total_steps", 0))

            def progress(r: trainer_pb2.Run) -> None:
                r.step, r.total_steps = step, total

            self.store.update(run_id, progress)
            self.metrics.steps.inc()
            self.metrics.tokens.inc(max(0, int(event.get("tokens", 0))))
            self.metrics.tokens_per_second.labels(run_id).set(event.get("tokens_per_second", 0.0))
            loss = event.get("loss", math.nan)
            if math.isfinite(loss):
                self.metrics.loss.labels(run_id).set(loss)
            self.metrics.record_step_figures(run_id, event.get("metrics", {}))
        elif kind == "checkpoint":
            info = checkpoint_info(event)
            if event.get("recovered") and any(c.step == info.step for c in self.store.get(run_id).checkpoints):
                return  # a restarted group re-announcing a checkpoint the record already has
            self.store.update(run_id, lambda r: _add_checkpoint(r, info))
            if "duration_s" in event:
                self.metrics.checkpoint_duration.observe(float(event["duration_s"]))
            self._log(to_proto(run_id, event))
            self._schedule_evaluation(run_id, entry, info)
            return
        elif kind == "message" and str(event.get("text", "")).startswith("worker group started"):
            self.metrics.worker_starts.inc()
        self._log(to_proto(run_id, event))

    # Checkpoint evaluations (CheckpointSpec.evaluator_*) ------------------------------------------

    def _schedule_evaluation(self, run_id: str, entry: _Active, info: trainer_pb2.CheckpointInfo) -> None:
        """Evaluate the checkpoint in the background on the manager's loop (training goes on)."""
        spec, loop = entry.spec, self._loop
        if spec is None or not wants_evaluation(spec) or not info.path or loop is None or loop.is_closed():
            return
        coro = self._evaluate(run_id, entry, spec, int(info.step), info.path)
        try:
            entry.evaluations.append(asyncio.run_coroutine_threadsafe(coro, loop))
        except RuntimeError:  # the loop closed meanwhile: the service is stopping
            coro.close()

    async def _evaluate(self, run_id: str, entry: _Active, spec: trainer_pb2.RunSpec, step: int, path: str) -> None:
        async with entry.evaluation_lock:
            try:
                metrics = await evaluate_checkpoint(spec, step, path)
            except EvaluationFailed as err:
                self._log(message_event(run_id, f"evaluation at step {step} failed: {err}"))
                return
            except Exception as err:  # an evaluation must never break the run or the loop
                log.exception("run %s: evaluation at step %d failed", run_id, step)
                self._log(message_event(run_id, f"evaluation at step {step} failed: {type(err).__name__}: {err}"))
                return
        event = trainer_pb2.RunEvent(
            run_id=run_id, time=now(), evaluation=trainer_pb2.EvaluationEvent(step=step, metrics=metrics)
        )
        self._log(event)
        log.info("run %s: checkpoint step %d evaluated: %s", run_id, step, metrics)

    def _await_evaluations(self, run_id: str, entry: _Active) -> None:
        """Let pending checkpoint evaluations log their results before the run's terminal event
        (WatchRun streams end at that event). Training has already ended; only the state waits."""
        pending = [f for f in entry.evaluations if not f.done()]
        if not pending:
            return
        self._log(message_event(run_id, f"training done; waiting for {len(pending)} checkpoint evaluation(s)"))
        concurrent.futures.wait(pending, timeout=EVALUATE_TIMEOUT_S * len(pending))

    def _finish(self, run_id: str, state: trainer_pb2.RunState, reason: str = "") -> trainer_pb2.Run:
        """Move ``run_id`` to terminal ``state`` (once: a run already ended keeps its state)."""
        ended = False

        def change(r: trainer_pb2.Run) -> None:
            nonlocal ended
            if r.state in TERMINAL_STATES:
                return
            ended = True
            r.state = state
            r.error = reason
            r.finished_at.CopyFrom(now())

        run = self.store.update(run_id, change)
        if ended:
            self._log(state_event(run_id, state, reason))
            self.metrics.runs_finished.labels(state_name(state)).inc()
            self._refresh_counts()
            log.info("run %s %s%s", run_id, state_name(state), f": {reason}" if reason else "")
        return run

    # Notifications ---------------------------------------------------------------------------

    def _log(self, event: trainer_pb2.RunEvent) -> None:
        if event.HasField("phase") and not event.phase.elapsed_s:
            created = self._created.get(event.run_id)
            if created is None:
                created = self._created[event.run_id] = self.store.get(event.run_id).created_at.ToNanoseconds() / 1e9
            event.phase.elapsed_s = max(0.0, event.time.ToNanoseconds() / 1e9 - created)
        self.store.append_event(event)
        self._notify(event.run_id)

    def _notify(self, run_id: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake, run_id)
        except RuntimeError:  # loop closed between the check and the call
            pass

    def _wake(self, run_id: str) -> None:
        for wake in self._watchers.get(run_id, ()):
            wake.set()

    def _refresh_counts(self) -> None:
        try:
            self.metrics.set_run_counts(self.store.count_by_state())
        except Exception:  # metrics must never break a run transition
            log.debug("could not refresh run counts", exc_info=True)


def _add_checkpoint(run: trainer_pb2.Run, info: trainer_pb2.CheckpointInfo) -> None:
    """Record ``info``; drop entries whose directory retention already removed."""
    kept = [c for c in run.checkpoints if c.step != info.step and (not c.path or os.path.exists(c.path))]
    if info.is_best:
        for c in kept:
            c.is_best = False
    kept.append(info)
    kept.sort(key=lambda c: c.step)
    del run.checkpoints[:]
    run.checkpoints.extend(kept)


def is_active(state: int) -> bool:
    return state in ACTIVE_STATES

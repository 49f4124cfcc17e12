"""The trainer's gRPC surface and run lifecycle, over real gRPC, with training faked.

Training itself (Ray Train + the recipe) is replaced by a scripted executor behind the narrow
``Executor`` interface; the Ray-backed service is covered in tests/integration/trainer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from cotdistill.common.grpc_server import GrpcService
from cotdistill.trainer.events import WorkerEvent, step_event
from cotdistill.trainer.manager import RunFailed
from cotdistill.trainer.server import build_server
from cotdistill.trainer.settings import TrainerSettings
from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc


class ScriptedExecutor:
    """Plays a run by its spec name: "fail" fails, "block" steps until stopped, else 4 steps."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def execute(self, run: trainer_pb2.Run, emit: Callable[[WorkerEvent], None], stop: threading.Event) -> None:
        self.calls.append(run.run_id)
        name = run.spec.name
        if name == "fail":
            raise RunFailed("worker 0 failed: RuntimeError: boom")
        if name == "restart":
            self._restart(run, emit)
            return
        total = 1000 if name == "block" else 4
        step = 0
        emit(WorkerEvent(kind="phase", phase="loading_model", text="scripted"))
        while step < total and not stop.is_set():
            step += 1
            emit(step_event(step, total, {"loss": 1.0 / step, "learning_rate": 1e-3, "tokens_per_second": 50.0}))
            if step % 2 == 0:
                Path(run.output_dir, f"ck{step}").mkdir(parents=True, exist_ok=True)
                emit(
                    WorkerEvent(
                        kind="checkpoint", step=step, path=f"{run.output_dir}/ck{step}", is_best=True, duration_s=0.01
                    )
                )
            time.sleep(0.01 if name != "block" else 0.02)
        emit(WorkerEvent(kind="finished", step=step, stopped=stop.is_set()))

    @staticmethod
    def _restart(run: trainer_pb2.Run, emit: Callable[[WorkerEvent], None]) -> None:
        """A worker group that announced checkpoint 2, committed 4 unannounced, died, and came back
        twice: once resuming from 2 (already known), once from 4 (news to the record)."""
        for step in (2, 4):
            Path(run.output_dir, f"ck{step}").mkdir(parents=True, exist_ok=True)
        emit(step_event(2, 6, {"loss": 1.0}))
        emit(WorkerEvent(kind="checkpoint", step=2, path=f"{run.output_dir}/ck2", is_best=False))
        for step in (2, 4):
            emit(WorkerEvent(kind="checkpoint", step=step, path=f"{run.output_dir}/ck{step}", recovered=True))
            emit(WorkerEvent(kind="message", text=f"worker group started: 2 worker(s), ddp; resuming from ck{step}"))
        emit(step_event(6, 6, {"loss": 0.5}))
        emit(WorkerEvent(kind="finished", step=6, stopped=False))

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        pass


def _accept(spec: trainer_pb2.RunSpec, output_dir: Path) -> None:
    """Stands in for the recipe's disk checks (model and data exist)."""


def _settings(tmp_path: Path) -> TrainerSettings:
    # The specs below name /models/student, /data/train.parquet and files under tmp_path: allowed.
    return TrainerSettings(
        port=0,
        metrics_port=0,
        artifacts_dir=str(tmp_path / "artifacts"),
        grace_period_s=2,
        path_roots=["/models", "/data", str(tmp_path)],
    )


Client = tuple[GrpcService, trainer_pb2_grpc.TrainerServiceStub]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Client]:
    svc = await build_server(_settings(tmp_path), executor=ScriptedExecutor(), validate=_accept)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
        yield svc, trainer_pb2_grpc.TrainerServiceStub(channel)
    await svc.stop(0)


def _spec(name: str = "ok") -> trainer_pb2.RunSpec:
    return trainer_pb2.RunSpec(
        name=name,
        student=trainer_pb2.StudentSpec(model="/models/student"),
        data=trainer_pb2.DataSpec(train_paths=["/data/train.parquet"]),
    )


async def _watch(
    stub: trainer_pb2_grpc.TrainerServiceStub, run_id: str, from_sequence: int = 0
) -> list[trainer_pb2.RunEvent]:
    call = stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run_id, from_sequence=from_sequence), timeout=30)
    return [response.event async for response in call]


async def test_run_succeeds_and_streams_dense_events(service: Client) -> None:
    svc, stub = service
    started = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec()))).run
    assert started.state == trainer_pb2.RUN_STATE_PENDING
    assert started.spec.scaling.num_workers == 1  # defaults filled in
    assert started.spec.scaling.strategy == trainer_pb2.PARALLEL_STRATEGY_DDP

    events = await _watch(stub, started.run_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert [e.step.step for e in events if e.HasField("step")] == [1, 2, 3, 4]
    states = [e.state.state for e in events if e.HasField("state")]
    assert states == [trainer_pb2.RUN_STATE_PENDING, trainer_pb2.RUN_STATE_RUNNING, trainer_pb2.RUN_STATE_SUCCEEDED]
    assert events[-1].HasField("state")  # the terminal state event ends the stream
    phases = [e.phase for e in events if e.HasField("phase")]
    assert [p.name for p in phases] == ["loading_model"] and 0 <= phases[0].elapsed_s < 60

    run = (await stub.GetRun(trainer_pb2.GetRunRequest(run_id=started.run_id))).run
    assert (run.state, run.step, run.total_steps) == (trainer_pb2.RUN_STATE_SUCCEEDED, 4, 4)
    assert [c.step for c in run.checkpoints] == [2, 4]
    assert run.HasField("started_at") and run.HasField("finished_at")

    # Resume the stream from the middle: exactly the tail comes back.
    tail = await _watch(stub, started.run_id, from_sequence=events[3].sequence)
    assert [e.sequence for e in tail] == [e.sequence for e in events[3:]]

    text = svc.registry.get_sample_value("cotdistill_trainer_runs", {"state": "succeeded"})
    assert text == 1
    assert svc.registry.get_sample_value("cotdistill_trainer_steps_total") == 4
    assert svc.registry.get_sample_value("cotdistill_trainer_checkpoint_duration_seconds_count") == 2


async def test_failure_reason_and_list_filter(service: Client) -> None:
    _, stub = service
    bad = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec("fail")))).run
    good = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec("ok")))).run
    await _watch(stub, bad.run_id)
    await _watch(stub, good.run_id)
    failed = (await stub.GetRun(trainer_pb2.GetRunRequest(run_id=bad.run_id))).run
    assert failed.state == trainer_pb2.RUN_STATE_FAILED
    assert "RuntimeError: boom" in failed.error

    listed = await stub.ListRuns(trainer_pb2.ListRunsRequest(state=trainer_pb2.RUN_STATE_FAILED))
    assert [r.run_id for r in listed.runs] == [bad.run_id]
    page1 = await stub.ListRuns(trainer_pb2.ListRunsRequest(page_size=1))
    page2 = await stub.ListRuns(trainer_pb2.ListRunsRequest(page_size=1, page_token=page1.next_page_token))
    assert [page1.runs[0].run_id, page2.runs[0].run_id] == [good.run_id, bad.run_id]
    assert page2.next_page_token == ""


async def test_cancel_stops_a_running_run_and_is_idempotent(service: Client) -> None:
    _, stub = service
    run = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec("block")))).run
    async for response in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id)):
        if response.event.HasField("step") and response.event.step.step >= 3:
            break
    cancelled = (await stub.CancelRun(trainer_pb2.CancelRunRequest(run_id=run.run_id))).run
    assert cancelled.state == trainer_pb2.RUN_STATE_CANCELLED
    assert "cancelled" in cancelled.error
    again = (await stub.CancelRun(trainer_pb2.CancelRunRequest(run_id=run.run_id))).run
    assert again.state == trainer_pb2.RUN_STATE_CANCELLED and again.finished_at == cancelled.finished_at
    events = await _watch(stub, run.run_id)
    assert events[-1].state.state == trainer_pb2.RUN_STATE_CANCELLED


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.scaling.__setattr__("gpus_per_worker", 1.0), "scaling.gpus_per_worker"),
        (lambda s: s.scaling.__setattr__("num_workers", 5000), "scaling.num_workers"),
        (lambda s: s.scaling.__setattr__("max_failures", 101), "scaling.max_failures"),
        (lambda s: s.scaling.__setattr__("cpus_per_worker", -1.0), "scaling.cpus_per_worker"),
    ],
)
async def test_bad_scaling_is_rejected_naming_the_field(
    service: Client, mutate: Callable[[trainer_pb2.RunSpec], None], field: str
) -> None:
    _, stub = service
    spec = _spec()
    mutate(spec)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.StartRun(trainer_pb2.StartRunRequest(spec=spec))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field)


async def test_unknown_and_empty_run_ids(service: Client) -> None:
    _, stub = service
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetRun(trainer_pb2.GetRunRequest(run_id="run-missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _watch(stub, "run-missing")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CancelRun(trainer_pb2.CancelRunRequest(run_id=""))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.StartRun(trainer_pb2.StartRunRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_restart_keeps_records_and_resumes_active_runs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first_executor = ScriptedExecutor()
    svc = await build_server(settings, executor=first_executor, validate=_accept)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        done = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec("ok")))).run
        await _watch(stub, done.run_id)
        active = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec("block")))).run
        async for response in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=active.run_id)):
            if response.event.HasField("step"):
                break
    await svc.stop(0)  # stops the blocking run at a step boundary; it stays RUNNING

    second_executor = ScriptedExecutor()
    svc = await build_server(settings, executor=second_executor, validate=_accept)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            listed = await stub.ListRuns(trainer_pb2.ListRunsRequest())
            assert [r.run_id for r in listed.runs] == [active.run_id, done.run_id]
            assert listed.runs[1].state == trainer_pb2.RUN_STATE_SUCCEEDED
            assert listed.runs[0].state in (trainer_pb2.RUN_STATE_PENDING, trainer_pb2.RUN_STATE_RUNNING)
            # Taken over, not restarted from nothing. The run thread calls the executor a moment
            # after the service is up: wait for that call instead of racing it.
            for _ in range(200):
                if second_executor.calls:
                    break
                await asyncio.sleep(0.05)
            assert second_executor.calls == [active.run_id]
            texts = []
            async for response in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=active.run_id), timeout=30):
                texts.append(response.event.message)
                if "resuming" in response.event.message:
                    break
            assert any("service stopping" in t for t in texts)
            await stub.CancelRun(trainer_pb2.CancelRunRequest(run_id=active.run_id))
    finally:
        await svc.stop(0)


async def test_a_run_that_cannot_resume_fails_with_the_reason(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    svc = await build_server(settings, executor=ScriptedExecutor(), validate=_accept)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        run = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec("block")))).run
        async for response in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id)):
            if response.event.HasField("step"):
                break
    await svc.stop(0)

    from cotdistill.common.errors import InvalidArgument

    def data_gone(spec: trainer_pb2.RunSpec, output_dir: Path) -> None:
        raise InvalidArgument("data.train_paths[0]", "no such file or directory")

    svc = await build_server(settings, executor=ScriptedExecutor(), validate=data_gone)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            record = (await stub.GetRun(trainer_pb2.GetRunRequest(run_id=run.run_id))).run
            assert record.state == trainer_pb2.RUN_STATE_FAILED
            assert "cannot resume" in record.error and "data.train_paths[0]" in record.error
    finally:
        await svc.stop(0)


async def test_shutdown_ends_watch_streams_with_unavailable(tmp_path: Path) -> None:
    from cotdistill.trainer.server import build

    svc, manager = await build(_settings(tmp_path), executor=ScriptedExecutor(), validate=_accept)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            run = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec("block")))).run
            call = stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id), timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for response in call:
                    if response.event.HasField("step"):
                        manager.stop_watchers()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "watch again from sequence" in (err.value.details() or "")
    finally:
        await svc.stop(0)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.student.__setattr__("model", "/etc"), "student.model"),
        (lambda s: s.student.__setattr__("model", "/models/../etc"), "student.model"),
        (lambda s: s.student.__setattr__("tokenizer", "/root/.ssh"), "student.tokenizer"),
        (lambda s: s.data.__setattr__("teacher_tokenizer", "/proc/self"), "data.teacher_tokenizer"),
        (lambda s: s.data.train_paths.__setitem__(0, "/etc/passwd"), "data.train_paths[0]"),
        (lambda s: s.data.validation_paths.append("/proc/self/environ"), "data.validation_paths[0]"),
    ],
)
async def test_paths_outside_the_roots_are_refused_before_anything_reads_them(
    service: Client, mutate: Callable[[trainer_pb2.RunSpec], None], field: str
) -> None:
    _, stub = service
    spec = _spec()
    mutate(spec)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.StartRun(trainer_pb2.StartRunRequest(spec=spec))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    details = err.value.details() or ""
    assert details.startswith(f"{field}: ") and "COTDISTILL_TRAINER_PATH_ROOTS" in details
    assert not (await stub.ListRuns(trainer_pb2.ListRunsRequest())).runs  # nothing was queued


async def test_accepted_paths_are_recorded_resolved(service: Client) -> None:
    _, stub = service
    spec = _spec()
    spec.data.train_paths[0] = "/data/shards/../train.parquet"
    run = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=spec))).run
    assert list(run.spec.data.train_paths) == ["/data/train.parquet"]
    await _watch(stub, run.run_id)


async def test_a_run_whose_paths_left_the_roots_fails_at_restart(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    svc = await build_server(settings, executor=ScriptedExecutor(), validate=_accept)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        run = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec("block")))).run
        async for response in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id)):
            if response.event.HasField("step"):
                break
    await svc.stop(0)

    narrower = settings.model_copy(update={"path_roots": [str(tmp_path)]})  # /models and /data no longer
    svc = await build_server(narrower, executor=ScriptedExecutor(), validate=_accept)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            record = (await stub.GetRun(trainer_pb2.GetRunRequest(run_id=run.run_id))).run
            assert record.state == trainer_pb2.RUN_STATE_FAILED
            assert "cannot resume" in record.error and "student.model: /models/student is outside" in record.error
    finally:
        await svc.stop(0)


async def test_a_restarted_group_announces_a_checkpoint_the_record_missed_once(service: Client) -> None:
    """Ray Train commits a checkpoint before rank 0 announces it: a group killed in between must not
    leave the record without the checkpoint the next group resumes from (nor list one twice)."""
    _, stub = service
    started = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec("restart")))).run
    events = await _watch(stub, started.run_id)
    assert [e.checkpoint.step for e in events if e.HasField("checkpoint")] == [2, 4]
    run = (await stub.GetRun(trainer_pb2.GetRunRequest(run_id=started.run_id))).run
    assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED
    assert [c.step for c in run.checkpoints] == [2, 4]

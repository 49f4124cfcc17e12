"""The trainer service on a real local Ray runtime, running the real recipe.

In order (they share one service): a 2-worker CPU DDP run; a killed worker mid-run; cancel;
bad specs; a service restart that keeps records and resumes an interrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc
from tests.integration.conftest import VENV_BIN
from tests.integration.trainer.conftest import TrainerUnderTest

WATCH_TIMEOUT_S = 150


def _spec(task: dict[str, Path], name: str, **hyper: int) -> trainer_pb2.RunSpec:
    return trainer_pb2.RunSpec(
        name=name,
        student=trainer_pb2.StudentSpec(model=str(task["student"])),
        data=trainer_pb2.DataSpec(train_paths=[str(task["train"])], format="ft_cot", max_seq_len=64),
        hyperparameters=trainer_pb2.Hyperparameters(
            learning_rate=3e-3,
            max_steps=hyper.get("max_steps", 6),
            batch_size=hyper.get("batch_size", 4),
            warmup_steps=0,
            seed=1,
        ),
        scaling=trainer_pb2.ScalingSpec(
            num_workers=hyper.get("num_workers", 2), cpus_per_worker=1, max_failures=hyper.get("max_failures", 0)
        ),
        checkpoints=trainer_pb2.CheckpointSpec(interval_steps=hyper.get("interval", 3), keep_last=2),
    )


def _stub(trainer: TrainerUnderTest) -> tuple[grpc.Channel, trainer_pb2_grpc.TrainerServiceStub]:
    channel = grpc.insecure_channel(trainer.address)
    return channel, trainer_pb2_grpc.TrainerServiceStub(channel)


def _watch_all(
    stub: trainer_pb2_grpc.TrainerServiceStub, run_id: str, from_sequence: int = 0
) -> list[trainer_pb2.RunEvent]:
    call = stub.WatchRun(
        trainer_pb2.WatchRunRequest(run_id=run_id, from_sequence=from_sequence), timeout=WATCH_TIMEOUT_S
    )
    return [r.event for r in call]


def _steps(events: list[trainer_pb2.RunEvent]) -> list[int]:
    return [e.step.step for e in events if e.HasField("step")]


def _messages(events: list[trainer_pb2.RunEvent]) -> list[str]:
    return [e.message for e in events if e.HasField("message")]


def _metric(trainer: TrainerUnderTest, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{trainer.service.metrics_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported:\n{text[:2000]}")


def test_two_worker_ddp_run_streams_steps_and_checkpoints(trainer: TrainerUnderTest, task: dict[str, Path]) -> None:
    channel, stub = _stub(trainer)
    with channel:
        run = stub.StartRun(trainer_pb2.StartRunRequest(spec=_spec(task, "ddp", max_steps=6, interval=3))).run
        events = _watch_all(stub, run.run_id)
        record = stub.GetRun(trainer_pb2.GetRunRequest(run_id=run.run_id)).run
    assert record.state == trainer_pb2.RUN_STATE_SUCCEEDED, (record.error, _messages(events))
    assert _steps(events) == [1, 2, 3, 4, 5, 6]
    pids = {m.rsplit(" ", 1)[1] for m in _messages(events) if m.startswith("worker rank")}
    assert len(pids) == 2  # two real worker processes
    assert all(e.step.loss > 0 and e.step.tokens_per_second > 0 for e in events if e.HasField("step"))
    assert [c.step for c in record.checkpoints] == [3, 6]
    for checkpoint in record.checkpoints:
        assert (Path(checkpoint.path) / "config.json").is_file()
        assert Path(checkpoint.path).is_relative_to(record.output_dir)
    assert _metric(trainer, "cotdistill_trainer_steps_total") >= 6
    assert _metric(trainer, 'cotdistill_trainer_runs{state="succeeded"}') >= 1


def test_cli_train_starts_and_watches_a_run(trainer: TrainerUnderTest, task: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"name: cli-run\noutput_dir: {tmp_path / 'runs'}\nstages: [train]\n"
        f"training:\n  student: {{model: {task['student']}}}\n"
        f"  data: {{train_paths: [{task['train']}], max_seq_len: 64}}\n"
        "  hyperparameters: {max_steps: 3, batch_size: 4}\n  scaling: {cpus_per_worker: 1}\n"
    )
    done = subprocess.run(
        [
            str(VENV_BIN / "cotdistill"),
            "train",
            str(recipe),
            "training.hyperparameters.learning_rate=0.003",
            "--address",
            trainer.address,
        ],
        capture_output=True,
        text=True,
        timeout=WATCH_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "succeeded" in done.stderr and "checkpoint step 3" in done.stderr
    channel, stub = _stub(trainer)
    with channel:
        runs = stub.ListRuns(trainer_pb2.ListRunsRequest(state=trainer_pb2.RUN_STATE_SUCCEEDED)).runs
    mine = [r for r in runs if r.spec.name == "cli-run"]
    assert mine and mine[0].step == 3 and mine[0].spec.hyperparameters.learning_rate == pytest.approx(0.003)

    recipe.write_text(recipe.read_text().replace(str(task["train"]), "/nonexistent.jsonl"))
    bad = subprocess.run(
        [str(VENV_BIN / "cotdistill"), "train", str(recipe), "--address", trainer.address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "data.train_paths[0]" in bad.stderr and "Traceback" not in bad.stderr


def _split_at_restart(
    events: list[trainer_pb2.RunEvent], marker: str
) -> tuple[list[trainer_pb2.RunEvent], list[trainer_pb2.RunEvent]]:
    """Events before and after the last message containing ``marker`` (a new worker group)."""
    starts = [i for i, e in enumerate(events) if e.HasField("message") and marker in e.message]
    assert starts, _messages(events)
    return events[: starts[-1]], events[starts[-1] :]


def test_killed_worker_resumes_from_the_last_checkpoint(trainer: TrainerUnderTest, task: dict[str, Path]) -> None:
    interval, total = 10, 120
    spec = _spec(task, "kill", max_steps=total, interval=interval, max_failures=2)
    channel, stub = _stub(trainer)
    with channel:
        run = stub.StartRun(trainer_pb2.StartRunRequest(spec=spec)).run
        events: list[trainer_pb2.RunEvent] = []
        killed = False
        for response in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id), timeout=WATCH_TIMEOUT_S):
            event = response.event
            events.append(event)
            if not killed and event.HasField("step") and event.step.step > interval:
                # A checkpoint exists and the run is past it: kill the rank-1 worker process.
                pid = next(int(m.rsplit(" ", 1)[1]) for m in _messages(events) if m.startswith("worker rank 1/"))
                os.kill(pid, signal.SIGKILL)
                killed = True
        record = stub.GetRun(trainer_pb2.GetRunRequest(run_id=run.run_id)).run
    assert killed, "the run ended before the test could kill a worker"
    assert record.state == trainer_pb2.RUN_STATE_SUCCEEDED, (record.error, _messages(events))
    before, after = _split_at_restart(events, "worker group started")
    assert "resuming from" in next(
        e.message for e in after if e.HasField("message") and "worker group started" in e.message
    )
    saved = [e.checkpoint.step for e in before if e.HasField("checkpoint")]
    resumed_at = _steps(after)[0] - 1
    assert saved and resumed_at == saved[-1]  # restarted from the latest checkpoint, not from zero
    assert max(_steps(before)) - resumed_at <= interval  # at most one checkpoint interval redone
    assert _steps(after)[-1] == total


def test_cancel_stops_the_run_and_keeps_a_checkpoint(trainer: TrainerUnderTest, task: dict[str, Path]) -> None:
    spec = _spec(task, "cancel", max_steps=100_000, interval=1000, num_workers=1)
    channel, stub = _stub(trainer)
    with channel:
        run = stub.StartRun(trainer_pb2.StartRunRequest(spec=spec)).run
        for response in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id), timeout=WATCH_TIMEOUT_S):
            if response.event.HasField("step") and response.event.step.step >= 2:
                break
        cancelled = stub.CancelRun(trainer_pb2.CancelRunRequest(run_id=run.run_id), timeout=WATCH_TIMEOUT_S).run
        events = _watch_all(stub, run.run_id)
    assert cancelled.state == trainer_pb2.RUN_STATE_CANCELLED, cancelled.error
    assert events[-1].state.state == trainer_pb2.RUN_STATE_CANCELLED
    assert 2 <= cancelled.step < 100_000
    assert cancelled.checkpoints and cancelled.checkpoints[-1].step == cancelled.step  # the work done is kept
    assert (Path(cancelled.checkpoints[-1].path) / "config.json").is_file()


def test_cancel_inside_gradient_accumulation_stops_within_5_s_keeping_the_last_checkpoint(
    trainer: TrainerUnderTest, task: dict[str, Path]
) -> None:
    """200 micro-batches a step: cancel right after step 1's checkpoint stops step 2 midway."""
    spec = _spec(task, "cancel-accumulation", max_steps=1000, interval=1, num_workers=1)
    spec.hyperparameters.gradient_accumulation = 200
    channel, stub = _stub(trainer)
    with channel:
        run = stub.StartRun(trainer_pb2.StartRunRequest(spec=spec)).run
        for response in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id), timeout=WATCH_TIMEOUT_S):
            if response.event.HasField("checkpoint") and response.event.checkpoint.step == 1:
                break
        started = time.monotonic()
        cancelled = stub.CancelRun(trainer_pb2.CancelRunRequest(run_id=run.run_id), timeout=WATCH_TIMEOUT_S).run
        took = time.monotonic() - started
        events = _watch_all(stub, run.run_id)
    assert cancelled.state == trainer_pb2.RUN_STATE_CANCELLED, cancelled.error
    assert took < 5.0, f"CancelRun took {took:.1f} s"
    # Stopped inside step 2's window (at a step boundary it would have run all 200 micro-batches).
    assert cancelled.step == 1 and _steps(events) == [1]
    assert [c.step for c in cancelled.checkpoints] == [1]  # the last checkpoint is kept
    assert (Path(cancelled.checkpoints[-1].path) / "model.safetensors").is_file()


def test_a_failing_worker_fails_the_run_with_its_reason(
    trainer: TrainerUnderTest, task: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "What is 1 plus 1?", "rationale": "2", "answer": "2"}\n{not json\n')
    spec = _spec(task, "broken", num_workers=1)
    del spec.data.train_paths[:]
    spec.data.train_paths.append(str(broken))  # exists, so StartRun accepts it; the worker cannot parse it
    channel, stub = _stub(trainer)
    with channel:
        run = stub.StartRun(trainer_pb2.StartRunRequest(spec=spec)).run
        events = _watch_all(stub, run.run_id)
        record = stub.GetRun(trainer_pb2.GetRunRequest(run_id=run.run_id)).run
    assert record.state == trainer_pb2.RUN_STATE_FAILED
    assert "worker 0 failed" in record.error and "broken.jsonl:2: invalid JSON" in record.error, record.error
    assert events[-1].state.state == trainer_pb2.RUN_STATE_FAILED and events[-1].state.reason == record.error


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"model": "/etc"}, "student.model", grpc.StatusCode.PERMISSION_DENIED),
        ({"model": "{task}/no-student"}, "student.model", grpc.StatusCode.NOT_FOUND),
        ({"model": "{task}"}, "student.model", grpc.StatusCode.INVALID_ARGUMENT),  # no config.json
        ({"train_paths": []}, "data.train_paths", grpc.StatusCode.INVALID_ARGUMENT),
        ({"train_paths": ["/etc/passwd"]}, "data.train_paths[0]", grpc.StatusCode.PERMISSION_DENIED),
        ({"train_paths": ["{task}/../../../etc/passwd"]}, "data.train_paths[0]", grpc.StatusCode.PERMISSION_DENIED),
        ({"train_paths": ["{task}/none.jsonl"]}, "data.train_paths[0]", grpc.StatusCode.NOT_FOUND),
        # Inside the roots but not sample data: refused at StartRun, not inside a Ray worker.
        ({"train_paths": ["{task}/passwd.jsonl"]}, "data.train_paths[0]", grpc.StatusCode.INVALID_ARGUMENT),
        ({"format": "no_such_format"}, "data.format", grpc.StatusCode.INVALID_ARGUMENT),
        ({"learning_rate": 2.0}, "hyperparameters.learning_rate", grpc.StatusCode.INVALID_ARGUMENT),
        ({"num_workers": 3}, "scaling.num_workers", grpc.StatusCode.INVALID_ARGUMENT),  # the local Ray has 2 CPUs
        ({"kd_weight": 1.0}, "objective.kd_weight", grpc.StatusCode.INVALID_ARGUMENT),  # SFT samples: no top-k
    ],
)
def test_bad_specs_are_rejected_naming_the_field(
    trainer: TrainerUnderTest,
    task: dict[str, Path],
    change: dict[str, object],
    field: str,
    code: grpc.StatusCode,
) -> None:
    folder = task["train"].parent
    (folder / "passwd.jsonl").write_text("root:x:0:0:root:/root:/bin/bash\n")
    spec = _spec(task, "bad")
    if "model" in change:
        spec.student.model = str(change["model"]).format(task=folder)
    if "train_paths" in change:
        del spec.data.train_paths[:]
        spec.data.train_paths.extend(str(p).format(task=folder) for p in change["train_paths"])  # type: ignore[attr-defined]
    if "format" in change:
        spec.data.format = str(change["format"])
    if "learning_rate" in change:
        spec.hyperparameters.learning_rate = float(change["learning_rate"])  # type: ignore[arg-type]
    if "num_workers" in change:
        spec.scaling.num_workers = int(change["num_workers"])  # type: ignore[call-overload]
    if "kd_weight" in change:
        spec.objective.kd_weight = float(change["kd_weight"])  # type: ignore[arg-type]
    channel, stub = _stub(trainer)
    with channel, pytest.raises(grpc.RpcError) as err:
        stub.StartRun(trainer_pb2.StartRunRequest(spec=spec), timeout=30)
    assert err.value.code() == code, err.value.details()
    assert err.value.details().startswith(field), err.value.details()


def test_service_restart_keeps_runs_and_resumes_the_active_one(
    trainer: TrainerUnderTest, task: dict[str, Path]
) -> None:
    spec = _spec(task, "restart", max_steps=60, interval=5, num_workers=1)
    channel, stub = _stub(trainer)
    with channel:
        before_restart = {r.run_id: r.state for r in stub.ListRuns(trainer_pb2.ListRunsRequest()).runs}
        run = stub.StartRun(trainer_pb2.StartRunRequest(spec=spec)).run
        for response in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id), timeout=WATCH_TIMEOUT_S):
            if response.event.HasField("checkpoint"):
                break
    trainer.restart()  # SIGTERM: the run stops at a step boundary and stays active
    channel, stub = _stub(trainer)
    with channel:
        events = _watch_all(stub, run.run_id)
        record = stub.GetRun(trainer_pb2.GetRunRequest(run_id=run.run_id)).run
        after_restart = {r.run_id: r.state for r in stub.ListRuns(trainer_pb2.ListRunsRequest()).runs}
    assert record.state == trainer_pb2.RUN_STATE_SUCCEEDED, (record.error, _messages(events))
    assert {k: after_restart[k] for k in before_restart} == before_restart  # old records kept as they were
    texts = _messages(events)
    assert any("service stopping" in t for t in texts) and any("service restarted" in t for t in texts)
    before, after = _split_at_restart(events, "worker group started")
    saved = [e.checkpoint.step for e in before if e.HasField("checkpoint")]
    assert _steps(after)[0] - 1 == saved[-1]  # resumed from the latest checkpoint
    assert _steps(after)[-1] == 60
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))  # one log across processes

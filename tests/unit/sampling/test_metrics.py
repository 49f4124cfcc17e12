"""The driver's backlog gauge: published before any teacher answers, so KEDA can wake a teacher
scaled to zero; it counts down as units are stored and reads 0 once the job is over."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import ConfigError, Unavailable
from cotdistill.common.metrics import new_registry
from cotdistill.pipeline.sampling.metrics import PORT_ENV, SamplingMetrics, serve_from_env
from cotdistill.v1 import teacher_pb2_grpc
from tests.conftest import free_port
from tests.unit.sampling.fake_teacher import FakeTeacher
from tests.unit.sampling.test_job import run_job

UNITS = 4  # 10 examples in units of 3 (test_job's plan)


def sample(metrics: SamplingMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name, {"run": "r1"})
    assert value is not None, f"{name} is not exported"
    return value


async def test_the_backlog_is_published_while_no_teacher_runs_and_drains_when_one_comes_up(tmp_path: Path) -> None:
    port = free_port()
    metrics = SamplingMetrics(new_registry(), "r1")
    job = asyncio.create_task(
        run_job(ArtifactStore(tmp_path), [f"127.0.0.1:{port}"], info_timeout_s=30, metrics=metrics)
    )
    # Nothing listens on the teacher's address (scaled to zero): the whole job is pending already.
    for _ in range(100):
        if metrics.registry.get_sample_value("cotdistill_sampling_units_pending", {"run": "r1"}) is not None:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    assert not job.done()
    assert sample(metrics, "cotdistill_sampling_units_pending") == UNITS
    assert sample(metrics, "cotdistill_sampling_units") == UNITS
    # The autoscaler brings a replica up on that address; the job proceeds and the gauge drains.
    server = grpc.aio.server()
    teacher_pb2_grpc.add_TeacherServiceServicer_to_server(FakeTeacher(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        result = await asyncio.wait_for(job, 30)
    finally:
        await server.stop(None)
    assert result.units_done == UNITS
    assert sample(metrics, "cotdistill_sampling_units_pending") == 0
    assert sample(metrics, "cotdistill_sampling_units_completed_total") == UNITS


async def test_a_failed_job_leaves_nothing_pending(tmp_path: Path) -> None:
    metrics = SamplingMetrics(new_registry(), "r1")
    with pytest.raises(Unavailable):
        await run_job(ArtifactStore(tmp_path), [f"127.0.0.1:{free_port()}"], info_timeout_s=0.5, metrics=metrics)
    assert sample(metrics, "cotdistill_sampling_units_pending") == 0


def test_the_listener_serves_the_gauge_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PORT_ENV, raising=False)
    with serve_from_env("r1") as metrics:
        assert metrics is None  # a laptop run opens no port
    port = free_port()
    monkeypatch.setenv(PORT_ENV, str(port))
    with serve_from_env("r1") as metrics:
        assert metrics is not None
        metrics.planned(7, 5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (pending,) = families["cotdistill_sampling_units_pending"].samples
    assert pending.labels == {"run": "r1"} and pending.value == 5
    monkeypatch.setenv(PORT_ENV, "ninety")
    with pytest.raises(ConfigError, match=PORT_ENV), serve_from_env("r1"):
        pass

"""The shared gRPC frame, in process: health gating, errors, metrics, graceful drain."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cotdistill.common.grpc_client import open_channel, wait_for_ready
from cotdistill.common.grpc_server import create_server
from cotdistill.common.settings import ServiceSettings
from cotdistill.teacher.server import build_server
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc

SETTINGS = ServiceSettings(port=0, metrics_port=0)


class SlowTeacher(teacher_pb2_grpc.TeacherServiceServicer):
    """A narrow stand-in servicer: streams three results slowly (to test draining)."""

    async def Sample(
        self, request: teacher_pb2.SampleRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[teacher_pb2.SampleResponse]:
        for i in range(3):
            await asyncio.sleep(0.3)
            yield teacher_pb2.SampleResponse(sample_index=i, text=f"step {i}")


def _register(server: grpc.aio.Server) -> Sequence[str]:
    teacher_pb2_grpc.add_TeacherServiceServicer_to_server(SlowTeacher(), server)
    return ["cotdistill.v1.TeacherService"]


async def _status(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def test_not_serving_until_ready_then_serving() -> None:
    service = await create_server("test", SETTINGS, _register)
    try:
        async with open_channel(f"127.0.0.1:{service.port}") as channel:
            assert await _status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await _status(channel, "cotdistill.v1.TeacherService") == health_pb2.HealthCheckResponse.NOT_SERVING
            await service.set_serving(True)
            await wait_for_ready(channel, "cotdistill.v1.TeacherService", timeout_s=5)
    finally:
        await service.stop(0)


async def test_sigterm_style_stop_drains_in_flight_streams() -> None:
    service = await create_server("test", SETTINGS, _register)
    await service.set_serving(True)
    async with open_channel(f"127.0.0.1:{service.port}") as channel:
        stub = teacher_pb2_grpc.TeacherServiceStub(channel)
        call = stub.Sample(teacher_pb2.SampleRequest())
        first = await call.read()
        assert first.text == "step 0"
        stopping = asyncio.create_task(service.stop(grace_s=5))
        rest = []
        while (msg := await call.read()) is not grpc.aio.EOF:
            rest.append(msg)
        await stopping
        assert [m.text for m in rest] == ["step 1", "step 2"]
        assert await call.code() == grpc.StatusCode.OK
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Sample(teacher_pb2.SampleRequest(), timeout=1).read()
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_grace_period_bounds_the_drain() -> None:
    service = await create_server("test", SETTINGS, _register)
    await service.set_serving(True)
    async with open_channel(f"127.0.0.1:{service.port}") as channel:
        call = teacher_pb2_grpc.TeacherServiceStub(channel).Sample(teacher_pb2.SampleRequest())
        await call.read()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await service.stop(grace_s=0.1)
        assert loop.time() - start < 2
        with pytest.raises(grpc.aio.AioRpcError):
            while await call.read() is not grpc.aio.EOF:
                pass


async def test_teacher_skeleton_answers_unimplemented_and_counts_it() -> None:
    service = await build_server(TeacherSettings(port=0, metrics_port=0))
    try:
        async with open_channel(f"127.0.0.1:{service.port}") as channel:
            await wait_for_ready(channel, "cotdistill.v1.TeacherService", timeout_s=5)
            stub = teacher_pb2_grpc.TeacherServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Info(teacher_pb2.InfoRequest())
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "Teacher service" in (err.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.Sample(teacher_pb2.SampleRequest()):
                    pass
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        text = await asyncio.to_thread(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5).read().decode()
            )
        )
        assert 'cotdistill_grpc_requests_total{code="UNIMPLEMENTED",method="Info",service="teacher"} 1.0' in text
        assert 'cotdistill_grpc_requests_total{code="UNIMPLEMENTED",method="Sample",service="teacher"} 1.0' in text
        assert 'cotdistill_service_ready{service="teacher"} 1.0' in text
        assert "process_resident_memory_bytes" in text
    finally:
        await service.stop(0)


async def test_two_services_in_one_process_keep_separate_metrics() -> None:
    a = await build_server(TeacherSettings(port=0, metrics_port=0))
    b = await build_server(TeacherSettings(port=0, metrics_port=0))
    try:
        assert a.port != b.port and a.metrics_port != b.metrics_port
        assert a.registry is not b.registry
    finally:
        await a.stop(0)
        await b.stop(0)

"""The shared gRPC frame, in process: health gating, errors, metrics, graceful drain.

A narrow stand-in servicer exercises the frame; the real services are tested in their own folders.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cotdistill.common.errors import (
    ConfigError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from cotdistill.common.grpc_client import open_channel, wait_for_ready
from cotdistill.common.grpc_errors import status_for, unary_errors
from cotdistill.common.grpc_server import create_server
from cotdistill.common.metrics import DEADLINE_SLACK_S, _status_of
from cotdistill.common.settings import ServiceSettings
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


async def test_before_stop_hooks_run_before_the_drain_and_clean_ups_after_it() -> None:
    service = await create_server("test", SETTINGS, _register)
    await service.set_serving(True)
    seen: list[tuple[str, float | None]] = []

    def in_flight() -> float | None:
        return service.registry.get_sample_value(
            "cotdistill_grpc_in_flight_requests", {"service": "test", "method": "Sample"}
        )

    async def before() -> None:
        seen.append(("before", in_flight()))

    async def after() -> None:
        seen.append(("after", in_flight()))

    service.before_stop(before)
    service.on_stop(after)
    async with open_channel(f"127.0.0.1:{service.port}") as channel:
        call = teacher_pb2_grpc.TeacherServiceStub(channel).Sample(teacher_pb2.SampleRequest())
        await call.read()
        stopping = asyncio.create_task(service.stop(grace_s=5))
        while await call.read() is not grpc.aio.EOF:
            pass
        await stopping
    assert seen == [("before", 1.0), ("after", 0.0)]  # the stream was in flight, then drained


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


class CountingTeacher(SlowTeacher):
    """Stand-in servicer with one call that fails with INVALID_ARGUMENT the way services do."""

    @unary_errors
    async def Info(
        self, request: teacher_pb2.InfoRequest, context: grpc.aio.ServicerContext
    ) -> teacher_pb2.InfoResponse:
        raise InvalidArgument("model_id", "not known")


class BuggyTeacher(SlowTeacher):
    """Stand-in servicer whose calls fail with what a bug raises, not a typed request error."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @unary_errors
    async def Info(
        self, request: teacher_pb2.InfoRequest, context: grpc.aio.ServicerContext
    ) -> teacher_pb2.InfoResponse:
        raise self.error


def _register_counting(server: grpc.aio.Server) -> Sequence[str]:
    teacher_pb2_grpc.add_TeacherServiceServicer_to_server(CountingTeacher(), server)
    return ["cotdistill.v1.TeacherService"]


async def test_errors_map_to_status_codes_and_metrics_count_them() -> None:
    service = await create_server("teacher", SETTINGS, _register_counting)
    await service.set_serving(True)
    try:
        async with open_channel(f"127.0.0.1:{service.port}") as channel:
            stub = teacher_pb2_grpc.TeacherServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Info(teacher_pb2.InfoRequest())
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details() == "model_id: not known"
            assert len([m async for m in stub.Sample(teacher_pb2.SampleRequest())]) == 3
        text = await asyncio.to_thread(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5).read().decode()
            )
        )
        assert 'cotdistill_grpc_requests_total{code="INVALID_ARGUMENT",method="Info",service="teacher"} 1.0' in text
        assert 'cotdistill_grpc_requests_total{code="OK",method="Sample",service="teacher"} 1.0' in text
        assert 'cotdistill_grpc_in_flight_requests{method="Sample",service="teacher"} 0.0' in text
        assert 'cotdistill_service_ready{service="teacher"} 1.0' in text
        assert "process_resident_memory_bytes" in text
    finally:
        await service.stop(0)


async def test_two_services_in_one_process_keep_separate_metrics() -> None:
    a = await create_server("a", SETTINGS, _register)
    b = await create_server("b", SETTINGS, _register)
    try:
        assert a.port != b.port
        assert a.metrics_port != b.metrics_port
        assert a.registry is not b.registry
    finally:
        await a.stop(0)
        await b.stop(0)


async def _invalid(call: object, body: bytes, streaming: bool) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        reply = call(body, timeout=10)  # type: ignore[operator]
        if streaming:
            async for _ in reply:
                pass
        else:
            await reply
    details = err.value.details() or ""
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "<class" not in details  # no internal exception name
    return details


async def test_undecodable_request_bytes_are_invalid_argument() -> None:
    service = await create_server("teacher", SETTINGS, _register_counting)
    await service.set_serving(True)
    try:
        async with open_channel(f"127.0.0.1:{service.port}") as channel:
            sample = channel.unary_stream("/cotdistill.v1.TeacherService/Sample")
            # SampleRequest.request_id (field 7, a string) holding invalid UTF-8; then a length
            # that runs past the end; then bytes that are not protobuf at all.
            for body, reason in (
                (b"\x3a\x02\xff\xfe", "String field had bad UTF-8"),
                (b"\x3a\x09/etc/", "Wire format was corrupt"),
                (b"\xff\xff\xff", "Wire format was corrupt"),
            ):
                details = await _invalid(sample, body, streaming=True)
                assert details == (
                    "request: the message does not decode (Error parsing message with type "
                    f"'cotdistill.v1.SampleRequest': {reason})"
                )
            info = channel.unary_unary("/cotdistill.v1.TeacherService/Info")
            assert "'cotdistill.v1.InfoRequest'" in await _invalid(info, b"\xff\xff\xff", streaming=False)
            stub = teacher_pb2_grpc.TeacherServiceStub(channel)
            assert len([m async for m in stub.Sample(teacher_pb2.SampleRequest())]) == 3  # the service is unharmed
        metrics = service.registry.get_sample_value(
            "cotdistill_grpc_requests_total", {"code": "INVALID_ARGUMENT", "method": "Sample", "service": "teacher"}
        )
        assert metrics == 3
    finally:
        await service.stop(0)


@pytest.mark.parametrize("error", [ValueError("bad value"), KeyError("k"), FileNotFoundError("/x"), RuntimeError()])
async def test_bare_exceptions_are_internal_not_client_errors(error: Exception) -> None:
    def register(server: grpc.aio.Server) -> Sequence[str]:
        teacher_pb2_grpc.add_TeacherServiceServicer_to_server(BuggyTeacher(error), server)
        return ["cotdistill.v1.TeacherService"]

    service = await create_server("teacher", SETTINGS, register)
    await service.set_serving(True)
    try:
        async with open_channel(f"127.0.0.1:{service.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await teacher_pb2_grpc.TeacherServiceStub(channel).Info(teacher_pb2.InfoRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert err.value.details() == f"internal error ({type(error).__name__}); see the service log"
    finally:
        await service.stop(0)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgument("f", "m"), grpc.StatusCode.INVALID_ARGUMENT),
        (ConfigError("m", key="k"), grpc.StatusCode.INVALID_ARGUMENT),
        (PermissionDenied("f", "m"), grpc.StatusCode.PERMISSION_DENIED),
        (FailedPrecondition("f", "m"), grpc.StatusCode.FAILED_PRECONDITION),
        (NotFound("m"), grpc.StatusCode.NOT_FOUND),
        (Unavailable("m"), grpc.StatusCode.UNAVAILABLE),
        (ResourceExhausted("m"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ValueError("m"), grpc.StatusCode.INTERNAL),
        (KeyError("m"), grpc.StatusCode.INTERNAL),
    ],
)
def test_only_typed_errors_are_client_errors(error: Exception, code: grpc.StatusCode) -> None:
    assert status_for(error) == code


class _EndedCall:
    """The part of a servicer context the metrics interceptor reads when a call ends early."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining

    def code(self) -> None:
        return None


@pytest.mark.parametrize(
    ("remaining", "code"),
    [
        (None, "CANCELLED"),  # no deadline: the client cancelled
        (5.0, "CANCELLED"),
        (DEADLINE_SLACK_S + 0.01, "CANCELLED"),
        (DEADLINE_SLACK_S, "DEADLINE_EXCEEDED"),  # the client's timer fired just before the server's
        (0.0, "DEADLINE_EXCEEDED"),
        (-1.0, "DEADLINE_EXCEEDED"),
    ],
)
def test_a_cancelled_call_counts_as_deadline_exceeded_only_at_its_deadline(remaining: float | None, code: str) -> None:
    for error in (asyncio.CancelledError(), GeneratorExit()):
        assert _status_of(_EndedCall(remaining), error) == code  # type: ignore[arg-type]

"""`cotdistill serve teacher` with the transformers backend, driven by real gRPC clients."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cotdistill.teacher.engines.transformers_engine import TransformersEngine
from cotdistill.teacher.server import build_server
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.v1 import common_pb2, teacher_pb2
from tests.integration.conftest import ServiceProcess, start_service, wait_until
from tests.integration.teacher.conftest import TEACHER_ENV, health_status, metric, prompt, scrape, stub

SERVICE = "cotdistill.v1.TeacherService"
REQUESTS = "cotdistill_grpc_requests_total"  # the shared interceptor's count, by method and code


@pytest.fixture(scope="module")
def teacher(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {
        **TEACHER_ENV,
        "COTDISTILL_TEACHER_MODEL": str(tiny_models["teacher"]),
        "COTDISTILL_TEACHER_MAX_IN_FLIGHT": "2",
    }
    service = start_service("teacher", tmp_path_factory.mktemp("teacher"), env)
    wait_until(lambda: health_status(service.address, SERVICE) == "SERVING", 120, "teacher SERVING", service)
    yield service
    service.terminate()


def long_request(rid: str) -> teacher_pb2.SampleRequest:
    params = teacher_pb2.SamplingParams(n=32, temperature=1.0, max_tokens=500, top_k_logprobs=20)
    return teacher_pb2.SampleRequest(prompts=[prompt("Tom has 3 apples.")], params=params, request_id=rid)


def test_info_describes_model_tokenizer_and_limits(teacher: ServiceProcess, tiny_models: dict[str, Path]) -> None:
    info = stub(teacher.address).Info(teacher_pb2.InfoRequest(), timeout=10)
    assert info.backend == "transformers" and info.model_id == str(tiny_models["teacher"])
    assert info.max_top_k == 20 and info.context_length == 512 and info.max_in_flight == 2
    assert info.tokenizer.vocab_size == 360 and info.tokenizer.eos_token_id == 2
    assert len(info.tokenizer.content_hash) == 64


def test_sample_streams_one_result_per_prompt_and_sample(teacher: ServiceProcess) -> None:
    params = teacher_pb2.SamplingParams(n=3, temperature=0.8, max_tokens=16, top_k_logprobs=20, seed=11)
    request = teacher_pb2.SampleRequest(
        prompts=[prompt("Tom has 3 apples.", "q1"), prompt("A coin", "q2")], params=params
    )
    results = list(stub(teacher.address).Sample(request, timeout=60))
    assert sorted((r.prompt_index, r.sample_index) for r in results) == [(p, s) for p in (0, 1) for s in range(3)]
    for r in results:
        lp = r.logprobs
        t = len(lp.token_ids)
        assert r.prompt_id == ("q1", "q2")[r.prompt_index] and r.prompt_text
        assert 1 <= t <= 16 and len(lp.token_logprobs) == t and lp.k == 20
        assert len(lp.top_ids) == len(lp.top_logprobs) == 20 * t
        assert lp.mode == common_pb2.LOGPROB_MODE_RAW
        assert r.usage.completion_tokens == t and r.usage.prompt_tokens > 0
        assert r.finish_reason in (common_pb2.FINISH_REASON_STOP, common_pb2.FINISH_REASON_LENGTH)
    again = list(stub(teacher.address).Sample(request, timeout=60))  # seeded: reproducible
    key = lambda r: (r.prompt_index, r.sample_index)  # noqa: E731
    assert [list(r.logprobs.token_ids) for r in sorted(results, key=key)] == [
        list(r.logprobs.token_ids) for r in sorted(again, key=key)
    ]


def test_score_returns_teacher_forced_topk(teacher: ServiceProcess) -> None:
    request = teacher_pb2.ScoreRequest(
        items=[teacher_pb2.ScoreItem(prompt="Tom has", completion=" 3 apples", id="a")], top_k_logprobs=5
    )
    (scored,) = stub(teacher.address).Score(request, timeout=30).completions
    t = len(scored.logprobs.token_ids)
    assert scored.id == "a" and t > 0 and len(scored.logprobs.top_ids) == 5 * t and scored.prompt_tokens > 0


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            teacher_pb2.SampleRequest(prompts=[prompt("x")], params=teacher_pb2.SamplingParams(top_k_logprobs=21)),
            "params.top_k_logprobs",
        ),
        (
            teacher_pb2.SampleRequest(prompts=[prompt("x")], params=teacher_pb2.SamplingParams(n=5000, temperature=1)),
            "params.n",
        ),
        (teacher_pb2.SampleRequest(prompts=[prompt("ok"), prompt("")]), "prompts[1].text"),
        (teacher_pb2.SampleRequest(prompts=[prompt("Tom has 3 apples. " * 200)]), "prompts[0].text"),
        (teacher_pb2.SampleRequest(), "prompts"),
    ],
    ids=["k-above-max", "n-too-large", "empty-prompt", "prompt-longer-than-context", "no-prompts"],
)
def test_invalid_requests_name_the_field(
    teacher: ServiceProcess, request_: teacher_pb2.SampleRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(stub(teacher.address).Sample(request_, timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(f"{field}: "), info.value.details()


def test_full_replica_answers_resource_exhausted_and_cancel_aborts(teacher: ServiceProcess) -> None:
    client = stub(teacher.address)
    before = scrape(teacher.metrics_port)
    calls = [client.Sample(long_request(f"long{i}"), timeout=120) for i in range(2)]
    wait_until(
        lambda: metric(scrape(teacher.metrics_port), "cotdistill_teacher_in_flight_requests") == 2, 30, "2 in flight"
    )
    with pytest.raises(grpc.RpcError) as info:
        list(client.Sample(long_request("third"), timeout=30))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_in_flight=2" in info.value.details()
    for call in calls:
        call.cancel()

    def drained() -> bool:
        text = scrape(teacher.metrics_port)
        # The status counter is recorded as each handler returns, a moment after the engine let go.
        return (
            metric(text, "cotdistill_teacher_in_flight_requests") == 0
            and metric(text, "cotdistill_teacher_queue_depth_requests") == 0
            and metric(text, REQUESTS, 'code="CANCELLED",method="Sample",service="teacher"') >= 2
        )

    wait_until(drained, 30, "cancelled requests aborted in the engine")
    after = scrape(teacher.metrics_port)
    aborted = "cotdistill_teacher_aborted_requests_total"
    assert metric(after, aborted) - metric(before, aborted) == 2
    assert metric(after, REQUESTS, 'code="RESOURCE_EXHAUSTED",method="Sample",service="teacher"') >= 1
    assert metric(after, REQUESTS, 'code="CANCELLED",method="Sample",service="teacher"') >= 2
    # The engine is free again: a short request completes promptly.
    short = teacher_pb2.SampleRequest(prompts=[prompt("A coin")], params=teacher_pb2.SamplingParams(max_tokens=4))
    assert len(list(client.Sample(short, timeout=30))) == 1


def test_deadline_aborts_the_generation(teacher: ServiceProcess) -> None:
    before = metric(scrape(teacher.metrics_port), "cotdistill_teacher_aborted_requests_total")
    counted = sum(
        metric(scrape(teacher.metrics_port), REQUESTS, f'code="{code}",method="Sample",service="teacher"')
        for code in ("DEADLINE_EXCEEDED", "CANCELLED")
    )
    with pytest.raises(grpc.RpcError) as info:
        list(stub(teacher.address).Sample(long_request("deadline"), timeout=1.0))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(
        lambda: metric(scrape(teacher.metrics_port), "cotdistill_teacher_aborted_requests_total") == before + 1,
        30,
        "deadline abort",
    )

    def ended_early(text: str) -> float:
        # The server sees the client's deadline as a cancel arriving at (or just before) its own
        # deadline; which of the two codes it records is unit-tested in test_grpc_frame.py.
        return sum(
            metric(text, REQUESTS, f'code="{code}",method="Sample",service="teacher"')
            for code in ("DEADLINE_EXCEEDED", "CANCELLED")
        )

    wait_until(lambda: ended_early(scrape(teacher.metrics_port)) >= counted + 1, 30, "the call counted")
    text = scrape(teacher.metrics_port)
    for name in (
        "cotdistill_teacher_time_to_first_token_seconds_count",
        "cotdistill_teacher_generated_tokens_total",
        "cotdistill_teacher_prompt_tokens_total",
    ):
        assert name in text


def test_record_ids_two_stage_and_answer_extraction(teacher: ServiceProcess) -> None:
    from cotdistill.common.tasks import load_dataset, render_teacher_prompt

    examples = load_dataset("synthetic_arithmetic", "train", limit=2)
    request = teacher_pb2.SampleRequest(
        prompts=[teacher_pb2.Prompt(id=ex.id, record_id=ex.id) for ex in examples],
        params=teacher_pb2.SamplingParams(n=2, temperature=1.0, max_tokens=12, seed=3),
        dataset="synthetic_arithmetic",
        split="train",
        prompt_format="zero_shot_cot",
        two_stage=teacher_pb2.TwoStage(answer_max_tokens=6),
    )
    results = list(stub(teacher.address).Sample(request, timeout=60))
    assert len(results) == 4
    for r in results:
        assert r.prompt_text == render_teacher_prompt("zero_shot_cot", examples[r.prompt_index])
        assert r.HasField("answer_text")
        assert r.usage.completion_tokens >= len(r.logprobs.token_ids)
    bad = teacher_pb2.SampleRequest(prompts=[teacher_pb2.Prompt(record_id="nope")], dataset="synthetic_arithmetic")
    with pytest.raises(grpc.RpcError) as info:
        list(stub(teacher.address).Sample(bad, timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("prompts[0].record_id: ")
    unknown = teacher_pb2.SampleRequest(prompts=[prompt("x")], dataset="no_such_dataset")
    with pytest.raises(grpc.RpcError) as info:
        list(stub(teacher.address).Sample(unknown, timeout=30))
    assert info.value.details().startswith("dataset: ")


def test_sigterm_drains_the_stream_in_flight(teacher: ServiceProcess) -> None:
    """Runs last in this module: it stops the shared process.

    The request is the long one (32 x 500 tokens with top-20): a short one could start and end
    between two scrapes of the in-flight gauge, and the test would wait for a stream already gone.
    """
    results: list[teacher_pb2.SampleResponse] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            results.extend(stub(teacher.address).Sample(long_request("drain"), timeout=120))
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    wait_until(
        lambda: metric(scrape(teacher.metrics_port), "cotdistill_teacher_in_flight_requests") == 1,
        30,
        "stream started",
        poll_s=0.05,
    )
    teacher.proc.send_signal(signal.SIGTERM)
    thread.join(120)
    assert not errors, errors
    assert len(results) == 32
    assert teacher.proc.wait(30) == 0
    assert "draining" in teacher.log()


async def test_not_serving_until_the_model_is_loaded(tiny_models: dict[str, Path]) -> None:
    settings = TeacherSettings(model=str(tiny_models["teacher"]), port=0, metrics_port=0, num_threads=1)
    server = await build_server(settings, TransformersEngine(settings.model, num_threads=1))
    address = f"127.0.0.1:{server.service.port}"
    try:
        assert await _health(address) == "NOT_SERVING"
        async with grpc.aio.insecure_channel(address) as channel:
            from cotdistill.v1 import teacher_pb2_grpc

            client = teacher_pb2_grpc.TeacherServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.Info(teacher_pb2.InfoRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            started = time.perf_counter()
            await server.load()
            assert await _health(address) == "SERVING"
            assert (await client.Info(teacher_pb2.InfoRequest(), timeout=5)).backend == "transformers"
            assert time.perf_counter() - started < 60
    finally:
        await server.stop(1)


async def _health(address: str) -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def test_dead_engine_turns_health_not_serving(tiny_models: dict[str, Path]) -> None:
    settings = TeacherSettings(
        model=str(tiny_models["teacher"]), port=0, metrics_port=0, num_threads=1, health_check_interval_s=0.1
    )
    engine = TransformersEngine(settings.model, num_threads=1)
    server = await build_server(settings, engine)
    address = f"127.0.0.1:{server.service.port}"
    try:
        await server.load()
        assert await _health(address) == "SERVING"
        await engine.close()  # the worker thread ends, as when it dies
        for _ in range(100):
            if await _health(address) == "NOT_SERVING":
                break
            await asyncio.sleep(0.1)
        assert await _health(address) == "NOT_SERVING"
        async with grpc.aio.insecure_channel(address) as channel:
            from cotdistill.v1 import teacher_pb2_grpc

            with pytest.raises(grpc.aio.AioRpcError) as info:
                await teacher_pb2_grpc.TeacherServiceStub(channel).Info(teacher_pb2.InfoRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(1)

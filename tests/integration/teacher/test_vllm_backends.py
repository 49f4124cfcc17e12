"""Real vLLM (CPU build) behind the teacher: agreement with transformers on the same weights,
n samples with exactly-k candidates, abort, and the gRPC service over vLLM.

One vLLM engine serves the whole module (start-up costs seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import torch

from cotdistill.teacher.engine import Completion, GenerateRequest, SamplingOptions, ScoreInput
from cotdistill.teacher.engines.transformers_engine import TransformersEngine
from cotdistill.teacher.engines.vllm_engine import VllmEngine
from cotdistill.teacher.server import build_server
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.v1 import common_pb2, teacher_pb2, teacher_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="module")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

PROMPTS = ["Tom has 3 apples. Tom buys 2 more.", "A coin", 'Take the last letters of the words in "Ana Lee"']
ATOL = 1e-4  # fp32 on both sides; measured differences are ~5e-7


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vllm_engine(tiny_models: dict[str, Path]) -> AsyncIterator[VllmEngine]:
    engine = VllmEngine(
        str(tiny_models["teacher"]),
        engine_kwargs={
            "enforce_eager": True,
            "dtype": "float32",
            "max_model_len": 512,
            "distributed_executor_backend": "uni",
        },
    )
    await engine.start()
    yield engine
    await engine.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hf_engine(tiny_models: dict[str, Path]) -> AsyncIterator[TransformersEngine]:
    engine = TransformersEngine(str(tiny_models["teacher"]), num_threads=1)
    await engine.start()
    yield engine
    await engine.close()


async def run(engine: Any, prompts: list[str], options: SamplingOptions, rid: str) -> list[Completion]:
    request = GenerateRequest(rid, prompts, engine.encode(prompts), options)
    return sorted([c async for c in engine.generate(request)], key=lambda c: (c.prompt_index, c.sample_index))


def assert_topk_close(a: Completion | Any, b: Completion | Any, k: int) -> None:
    """Same tokens; top-k logprobs within ATOL; ids equal except where neighbours tie within ATOL."""
    sa, sb = a.scores, b.scores
    assert sa.token_ids == sb.token_ids
    torch.testing.assert_close(torch.tensor(sa.token_logprobs), torch.tensor(sb.token_logprobs), atol=ATOL, rtol=0)
    la, lb = torch.tensor(sa.top_logprobs).view(-1, k), torch.tensor(sb.top_logprobs).view(-1, k)
    torch.testing.assert_close(la, lb, atol=ATOL, rtol=0)
    ia, ib = torch.tensor(sa.top_ids).view(-1, k), torch.tensor(sb.top_ids).view(-1, k)
    gaps = torch.cat([la[:, :-1] - la[:, 1:], torch.full((la.shape[0], 1), 1.0)], dim=1)
    mismatch = ia != ib
    assert not (mismatch & (gaps > ATOL)).any(), "top-k ids differ where logprobs are not tied"


async def test_vllm_and_transformers_agree_on_topk_logprobs(
    vllm_engine: VllmEngine, hf_engine: TransformersEngine
) -> None:
    assert vllm_engine.info().tokenizer == hf_engine.info().tokenizer  # same tokenizer, same hash
    options = SamplingOptions(n=1, temperature=0.0, max_tokens=16, top_k_logprobs=20)
    ours = await run(vllm_engine, PROMPTS, options, "agree-v")
    theirs = await run(hf_engine, PROMPTS, options, "agree-t")
    for a, b in zip(ours, theirs, strict=True):
        assert a.scores.k == 20 and len(a.scores.top_ids) == 20 * len(a.scores.token_ids)
        assert_topk_close(a, b, 20)
    items = [ScoreInput("Tom has", " 3 apples. END"), ScoreInput("", "A coin")]
    for a, b in zip(await vllm_engine.score(items, 5), await hf_engine.score(items, 5), strict=True):
        assert a.prompt_tokens == b.prompt_tokens
        assert_topk_close(a, b, 5)


async def test_vllm_samples_n_with_exactly_k_sorted_candidates(vllm_engine: VllmEngine) -> None:
    options = SamplingOptions(n=4, temperature=1.0, max_tokens=12, top_k_logprobs=5, seed=9, stop=("END",))
    first = await run(vllm_engine, PROMPTS[:2], options, "n1")
    assert [(c.prompt_index, c.sample_index) for c in first] == [(p, s) for p in (0, 1) for s in range(4)]
    for c in first:
        t = len(c.scores.token_ids)
        top = torch.tensor(c.scores.top_logprobs).view(t, 5)
        assert (top[:, :-1] >= top[:, 1:]).all()
        assert c.finish_reason in ("stop", "length") and c.prompt_tokens > 0
    again = await run(vllm_engine, PROMPTS[:2], options, "n2")
    assert [c.scores.token_ids for c in first] == [c.scores.token_ids for c in again]  # per-sample seeds
    # Many seeded samples at once: on vLLM's CPU build a seeded prefill split over steps kills the
    # engine; the engine runs without chunked prefill there, so this must simply work.
    many = await run(vllm_engine, PROMPTS * 4, SamplingOptions(n=32, temperature=1.0, max_tokens=2, seed=5), "many")
    assert len(many) == 12 * 32


async def test_vllm_abort_frees_the_request(vllm_engine: VllmEngine) -> None:
    options = SamplingOptions(n=16, temperature=1.0, max_tokens=400)
    stream = vllm_engine.generate(GenerateRequest("abort-me", PROMPTS[:1], vllm_engine.encode(PROMPTS[:1]), options))
    task = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.5)
    await vllm_engine.abort("abort-me")
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    await stream.aclose()
    assert vllm_engine.active_requests() == 0
    quick = await asyncio.wait_for(run(vllm_engine, PROMPTS[:1], SamplingOptions(max_tokens=3, temperature=0), "q"), 60)
    assert len(quick) == 1


async def test_grpc_service_over_vllm(vllm_engine: VllmEngine, tiny_models: dict[str, Path]) -> None:
    settings = TeacherSettings(model=str(tiny_models["teacher"]), backend="vllm", port=0, metrics_port=0)
    server = await build_server(settings, vllm_engine)
    server.service.on_stop(_noop)  # the module fixture owns the engine
    server.service._on_stop.remove(vllm_engine.close)
    server.servicer.ready = True
    await server.service.set_serving(True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.service.port}") as channel:
            client = teacher_pb2_grpc.TeacherServiceStub(channel)
            info = await client.Info(teacher_pb2.InfoRequest())
            assert info.backend == "vllm" and info.context_length == 512
            params = teacher_pb2.SamplingParams(n=2, temperature=0.7, max_tokens=8, top_k_logprobs=20, seed=1)
            request = teacher_pb2.SampleRequest(prompts=[teacher_pb2.Prompt(text=PROMPTS[0])], params=params)
            results = [r async for r in client.Sample(request)]
            assert len(results) == 2 and all(len(r.logprobs.top_ids) == 20 * len(r.logprobs.token_ids) for r in results)
            processed = teacher_pb2.SampleRequest(
                prompts=[teacher_pb2.Prompt(text="x")],
                params=teacher_pb2.SamplingParams(temperature=1, logprob_mode=common_pb2.LOGPROB_MODE_PROCESSED),
            )
            with pytest.raises(grpc.aio.AioRpcError) as info_err:
                _ = [r async for r in client.Sample(processed)]
            assert info_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (info_err.value.details() or "").startswith("params.logprob_mode: ")
            # Scoring given candidate ids needs vLLM's Model Runner V2 (Triton): not on this CPU
            # build, which Info says, and a request for it is refused naming the field.
            assert not info.scores_candidates
            item = teacher_pb2.ScoreItem(
                prompt="Tom has", completion_ids=[5, 6], candidate_ids=[5, 6], candidates_per_token=1
            )
            with pytest.raises(grpc.aio.AioRpcError) as cand_err:
                await client.Score(teacher_pb2.ScoreRequest(items=[item], top_k_logprobs=2))
            assert cand_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (cand_err.value.details() or "").startswith("items[0].candidate_ids: the vllm backend")
            # Token-id completions are scored as given, as the text they spell would be.
            ids = vllm_engine.encode([" 3 apples"], special_tokens=False)[0]
            by_ids, by_text = (
                await client.Score(
                    teacher_pb2.ScoreRequest(
                        items=[
                            teacher_pb2.ScoreItem(prompt="Tom has", completion_ids=ids),
                            teacher_pb2.ScoreItem(prompt="Tom has", completion=" 3 apples"),
                        ],
                        top_k_logprobs=3,
                    )
                )
            ).completions
            assert list(by_ids.logprobs.token_ids) == list(by_text.logprobs.token_ids) == ids
            assert list(by_ids.logprobs.top_logprobs) == pytest.approx(list(by_text.logprobs.top_logprobs), abs=1e-5)
    finally:
        await server.stop(1)


async def _noop() -> None:
    return None

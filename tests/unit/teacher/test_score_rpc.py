"""Score over gRPC on the tiny teacher with a chat template: chat prompts rendered as Sample renders
them, rendered text and token-id completions, candidate ids, and errors naming the item field."""

from __future__ import annotations

import math
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from transformers import AutoTokenizer

from cotdistill.teacher.engines.transformers_engine import TransformersEngine
from cotdistill.teacher.server import build_server
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CHAT = teacher_pb2.ChatPrompt(
    messages=[
        teacher_pb2.ChatMessage(role="system", content="Be brief."),
        teacher_pb2.ChatMessage(role="user", content="Tom has 3 apples and buys 2. How many?"),
    ],
    assistant_prefix="Let's think step by step.",
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[teacher_pb2_grpc.TeacherServiceStub, TransformersEngine]]:
    model = tmp_path_factory.mktemp("chat-teacher") / "teacher"
    shutil.copytree(tiny_models["teacher"], model)
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(model)
    engine = TransformersEngine(str(model), num_threads=1)
    settings = TeacherSettings(model=str(model), port=0, metrics_port=0)
    server = await build_server(settings, engine)
    await engine.start()
    server.servicer.ready = True
    await server.service.set_serving(True)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.service.port}") as channel:
        yield teacher_pb2_grpc.TeacherServiceStub(channel), engine
    await server.stop(1)


async def test_a_chat_item_is_scored_after_the_prompt_sample_would_render(client) -> None:  # type: ignore[no-untyped-def]
    stub, _ = client
    params = teacher_pb2.SamplingParams(temperature=0, max_tokens=1)
    sampled = [
        r async for r in stub.Sample(teacher_pb2.SampleRequest(prompts=[teacher_pb2.Prompt(chat=CHAT)], params=params))
    ]
    rendered = sampled[0].prompt_text
    assert rendered.startswith("<|system|>\nBe brief.\n<|user|>\nTom has") and rendered.endswith("step by step.")
    reply = await stub.Score(
        teacher_pb2.ScoreRequest(
            items=[
                teacher_pb2.ScoreItem(id="chat", chat=CHAT, completion=" 3 + 2 = 5."),
                teacher_pb2.ScoreItem(id="text", prompt=rendered, prompt_rendered=True, completion=" 3 + 2 = 5."),
            ],
            top_k_logprobs=5,
        )
    )
    chat, text = reply.completions
    assert chat.prompt_text == text.prompt_text == rendered
    assert chat.prompt_tokens == text.prompt_tokens == sampled[0].usage.prompt_tokens
    assert list(chat.logprobs.token_ids) == list(text.logprobs.token_ids)
    assert list(chat.logprobs.token_logprobs) == pytest.approx(list(text.logprobs.token_logprobs), abs=1e-5)


async def test_token_id_completions_and_candidate_ids_are_scored(client) -> None:  # type: ignore[no-untyped-def]
    stub, engine = client
    info = await stub.Info(teacher_pb2.InfoRequest())
    assert info.scores_candidates
    ids = engine.encode([" 3 + 2 = 5."], special_tokens=False)[0]
    first = (await stub.Score(teacher_pb2.ScoreRequest(
        items=[teacher_pb2.ScoreItem(prompt="Tom has", completion_ids=ids)], top_k_logprobs=4
    ))).completions[0]  # fmt: skip
    assert list(first.logprobs.token_ids) == ids and not first.candidate_logprobs
    # Candidates: the teacher's own top-4 in reverse order, then a padded slot.
    t = len(ids)
    top = [list(first.logprobs.top_ids[i * 4 : (i + 1) * 4]) for i in range(t)]
    cands = [c for row in top for c in [*reversed(row), -1]]
    item = teacher_pb2.ScoreItem(prompt="Tom has", completion_ids=ids, candidate_ids=cands, candidates_per_token=5)
    scored = (await stub.Score(teacher_pb2.ScoreRequest(items=[item], top_k_logprobs=4))).completions[0]
    got = list(scored.candidate_logprobs)
    assert len(got) == 5 * t
    for i in range(t):
        expected = list(reversed(first.logprobs.top_logprobs[i * 4 : (i + 1) * 4]))
        assert got[i * 5 : i * 5 + 4] == pytest.approx(expected, abs=1e-5)
        assert got[i * 5 + 4] == -math.inf


async def test_bad_items_name_their_field(client) -> None:  # type: ignore[no-untyped-def]
    stub, _ = client
    bad = teacher_pb2.ScoreItem(prompt="p", chat=CHAT, completion="c")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Score(teacher_pb2.ScoreRequest(items=[teacher_pb2.ScoreItem(prompt="p", completion="c"), bad]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("items[1].prompt: must be empty when chat is set")

"""The OpenAI-compatible backend against a real loopback server: the project's model server
(`cotdistill serve server`, FastAPI, /v1/completions with logprobs) on the same tiny weights,
compared with the transformers engine in this process; retries against a scripted HTTP server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import torch

from cotdistill.common.errors import Unavailable
from cotdistill.teacher.engine import Completion, GenerateRequest, SamplingOptions
from cotdistill.teacher.engines.openai_engine import OpenAIEngine
from cotdistill.teacher.engines.transformers_engine import TransformersEngine
from tests.integration.conftest import ServiceProcess, start_service, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")
PROMPTS = ["Tom has 3 apples. Tom buys 2 more.", "A coin", 'Take the last letters of the words in "Ana Lee"']
API_KEY = "teacher-test-key-0123456789"


@pytest.fixture(scope="module")
def model_server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    import httpx

    env = {
        "COTDISTILL_SERVER_MODEL": str(tiny_models["teacher"]),
        "COTDISTILL_SERVER_BACKEND": "transformers",
        "COTDISTILL_SERVER_SERVED_MODEL_NAME": "teacher",
        "COTDISTILL_SERVER_API_KEYS": API_KEY,
    }
    service = start_service("server", tmp_path_factory.mktemp("model-server"), env)

    def ready() -> bool:
        try:
            reply = httpx.get(f"http://{service.address}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
        except httpx.HTTPError:
            return False
        return reply.status_code == 200

    wait_until(ready, 120, "model server ready", service)
    yield service
    service.terminate()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hf_engine(tiny_models: dict[str, Path]) -> AsyncIterator[TransformersEngine]:
    engine = TransformersEngine(str(tiny_models["teacher"]), num_threads=1)
    await engine.start()
    yield engine
    await engine.close()


async def run(
    engine: OpenAIEngine | TransformersEngine, prompts: list[str], options: SamplingOptions
) -> list[Completion]:
    request = GenerateRequest("r", prompts, engine.encode(prompts) or [None] * len(prompts), options)
    return sorted([c async for c in engine.generate(request)], key=lambda c: (c.prompt_index, c.sample_index))


@pytest.mark.parametrize("probe", [True, False], ids=["token-ids", "token-strings"])
async def test_openai_backend_matches_the_same_weights_in_process(
    model_server: ServiceProcess,
    hf_engine: TransformersEngine,
    tiny_models: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    probe: bool,
) -> None:
    """With the probe the server's ``token_id:N`` ids are exact; without it, token strings
    (``bytes:\\x..`` for partial characters) are mapped back through the tokenizer's own bytes."""
    from cotdistill.teacher.settings import TeacherSettings

    monkeypatch.setenv("TEACHER_API_KEY", API_KEY)
    settings = TeacherSettings(
        backend="openai",
        model="teacher",
        tokenizer=str(tiny_models["teacher"]),
        openai_base_url=f"http://{model_server.address}/v1",
        openai_api_key_env="TEACHER_API_KEY",
        openai_max_retries=1,
        openai_probe_token_ids=probe,
    )
    engine = OpenAIEngine.from_settings(settings)
    await engine.start()
    try:
        assert engine.token_ids_param is probe
        info = engine.info()
        assert info.backend == "openai" and info.context_length == 512
        assert info.tokenizer is not None and info.tokenizer.content_hash == hf_engine.info().tokenizer.content_hash  # type: ignore[union-attr]
        options = SamplingOptions(n=1, temperature=0.0, max_tokens=12, top_k_logprobs=5)
        remote, local = await run(engine, PROMPTS, options), await run(hf_engine, PROMPTS, options)
        decode = hf_engine.tokenizer.decode
        mapped = total = 0
        for a, b in zip(remote, local, strict=True):
            assert a.text == b.text and a.finish_reason == b.finish_reason
            assert a.scores.k == 5 and len(a.scores.top_ids) == 5 * len(a.scores.token_ids)
            torch.testing.assert_close(
                torch.tensor(a.scores.token_logprobs), torch.tensor(b.scores.token_logprobs), atol=1e-4, rtol=0
            )
            if probe:
                assert a.scores.token_ids == b.scores.token_ids
            else:
                # A string several ids share (invalid UTF-8 from a random model) maps to the lowest.
                assert [decode([i]) for i in a.scores.token_ids] == [decode([i]) for i in b.scores.token_ids]
            mapped += sum(x == y for x, y in zip(a.scores.token_ids, b.scores.token_ids, strict=True))
            total += len(b.scores.token_ids)
            la, ia = torch.tensor(a.scores.top_logprobs).view(-1, 5), torch.tensor(a.scores.top_ids).view(-1, 5)
            lb, ib = torch.tensor(b.scores.top_logprobs).view(-1, 5), torch.tensor(b.scores.top_ids).view(-1, 5)
            for row in range(ia.shape[0]):
                exact = dict(zip(ib[row].tolist(), lb[row].tolist(), strict=True))
                kept = [(i, lp) for i, lp in zip(ia[row].tolist(), la[row].tolist(), strict=True) if i >= 0]
                # every candidate that survives the mapping is exact; ids keep every candidate
                assert all(abs(exact[i] - lp) < 1e-4 for i, lp in kept if i in exact)
                assert not probe or sorted(i for i, _ in kept) == sorted(exact)
            assert (ia >= 0).float().mean() > 0.6
        assert mapped / total > 0.6  # a random model writes much invalid UTF-8 (U+FFFD is ambiguous)
        sampled = await run(engine, PROMPTS[:2], SamplingOptions(n=3, temperature=1.0, max_tokens=6, seed=2))
        assert sorted((c.prompt_index, c.sample_index) for c in sampled) == [(p, s) for p in (0, 1) for s in range(3)]
    finally:
        await engine.close()


async def test_wrong_api_key_is_a_clear_error(model_server: ServiceProcess, tiny_models: dict[str, Path]) -> None:
    engine = OpenAIEngine(
        f"http://{model_server.address}/v1", "teacher", tokenizer_path=str(tiny_models["teacher"]), api_key="wrong"
    )
    with pytest.raises(Unavailable, match="HTTP 401"):
        await engine.start()
    await engine.close()


async def test_retries_on_429_and_5xx_then_unavailable(tiny_models: dict[str, Path]) -> None:
    """A scripted server answers 503, then 429 with Retry-After, then 200: two retries succeed."""
    answers = [(503, {}), (429, {"retry-after": "0"}), (200, {})]
    calls: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        calls.append(head.split(b" ")[1].decode())
        status, headers = answers.pop(0) if answers else (503, {})
        body = json.dumps({"data": [{"id": "m", "max_model_len": 64}]}).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra}connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = OpenAIEngine(
        f"http://127.0.0.1:{port}/v1", "m", tokenizer_path=str(tiny_models["teacher"]), max_retries=3, backoff_s=0.01
    )
    try:
        await engine.start()
        assert engine.retries == 2 and engine.info().context_length == 64 and calls == ["/v1/models"] * 3
        engine.max_retries = 1
        with pytest.raises(Unavailable, match="after 2 attempts: HTTP 503"):
            await engine.check_health()
    finally:
        await engine.close()
        server.close()


async def test_rate_limit_spaces_calls(tiny_models: dict[str, Path]) -> None:
    from cotdistill.teacher.engines.openai_engine import RateLimiter

    limiter = RateLimiter(20.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(limiter.acquire() for _ in range(5)))
    assert loop.time() - start >= 4 / 20 - 0.01

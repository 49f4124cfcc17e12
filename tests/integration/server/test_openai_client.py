"""The `openai` Python client against the model server on loopback: completions, chat, streaming,
echo and prompt scoring, token strings, tokenizer endpoints, refusals (shared with the vLLM backend)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
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


@pytest.fixture
def client(served: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.base_url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def served_chat(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The tiny student with a chat template (as trained checkpoints carry one)."""
    model = chat_templated_student(tiny_models["student"], tmp_path_factory.mktemp("chat"))
    running = start_server(server_settings(model))
    yield running
    running.stop()


def test_echo_scores_prompts_in_one_batch(client: openai.OpenAI, tiny_models: dict[str, Path]) -> None:
    behaviours.check_echo_scoring(client, tiny_models["student"])


def test_echo_with_generation_and_token_strings(client: openai.OpenAI, tiny_models: dict[str, Path]) -> None:
    behaviours.check_echo_with_generation(client, tiny_models["student"])


def test_chat_logprobs_carry_token_bytes(client: openai.OpenAI) -> None:
    behaviours.check_chat_logprob_bytes(client)


def test_models_retrieve_request_id_and_fingerprint(client: openai.OpenAI) -> None:
    behaviours.check_models_and_headers(client)


def test_unsupported_fields_are_refused_by_name(client: openai.OpenAI) -> None:
    behaviours.check_refusals(client)


def test_tokenizer_endpoints(served: RunningServer, tiny_models: dict[str, Path]) -> None:
    behaviours.check_tokenizer_endpoints(served.base_url, tiny_models["student"])


def test_chat_template_renders_the_whole_conversation(served_chat: RunningServer) -> None:
    client = openai.OpenAI(base_url=f"{served_chat.base_url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    model_dir = Path(served_chat.app.state.settings.model)
    behaviours.check_chat_renders_every_message(client, served_chat.base_url, model_dir)
    behaviours.check_tokenizer_endpoints(served_chat.base_url, model_dir)


def test_without_a_chat_template_only_one_user_message_is_served(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tom has 3 apples?"}],
            max_tokens=2,
        )
    assert refused.value.body["param"] == "messages"  # type: ignore[index]
    assert "no chat template" in refused.value.body["message"]  # type: ignore[index]


def test_models_lists_the_served_model(client: openai.OpenAI, tiny_models: dict) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert models[0].root == str(tiny_models["student"])  # type: ignore[attr-defined]


def test_completion_with_usage_logprobs_and_n(client: openai.OpenAI) -> None:
    out = client.completions.create(
        model=MODEL, prompt="Tom has 3 apples. ###", max_tokens=6, n=2, temperature=0.9, seed=7, logprobs=3
    )
    assert len(out.choices) == 2 and {c.index for c in out.choices} == {0, 1}
    for choice in out.choices:
        assert choice.finish_reason in ("stop", "length")
        lp = choice.logprobs
        assert lp is not None and len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs)
        assert all(len(top) <= 4 for top in lp.top_logprobs)  # top-3 + the chosen token (OpenAI: up to k+1)
        assert all(x <= 0 for x in lp.token_logprobs)
    assert out.usage is not None and out.usage.completion_tokens <= 12 and out.usage.prompt_tokens > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_same_seed_same_text_and_greedy_is_deterministic(client: openai.OpenAI) -> None:
    kw = {"model": MODEL, "prompt": "Ana has 5 pens.", "max_tokens": 8}
    a = client.completions.create(**kw, temperature=1.0, seed=123).choices[0].text
    b = client.completions.create(**kw, temperature=1.0, seed=123).choices[0].text
    assert a == b
    g1 = client.completions.create(**kw, temperature=0).choices[0].text
    g2 = client.completions.create(**kw, temperature=0).choices[0].text
    assert g1 == g2


def test_stop_string_ends_the_text(client: openai.OpenAI) -> None:
    base = client.completions.create(model=MODEL, prompt="Sam flips", max_tokens=12, temperature=0).choices[0].text
    word = base.strip().split()[0] if base.strip() else ""
    if len(word) < 2:
        pytest.skip("the random model's first word is too short to use as a stop string")
    cut = client.completions.create(model=MODEL, prompt="Sam flips", max_tokens=12, temperature=0, stop=[word])
    assert cut.choices[0].finish_reason == "stop"
    assert word not in cut.choices[0].text and base.startswith(cut.choices[0].text)


def test_streamed_completion_matches_the_whole_one(client: openai.OpenAI) -> None:
    kw = {"model": MODEL, "prompt": "Lee has 2 coins. ###", "max_tokens": 10, "temperature": 0}
    whole = client.completions.create(**kw).choices[0].text
    chunks = list(client.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


def test_chat_completion_and_stream(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Mia has 4 books. She buys 3 more. How many books does Mia have?"}]
    out = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=12, temperature=0, logprobs=True, top_logprobs=2
    )
    choice = out.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.logprobs is not None and choice.logprobs.content
    assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0, stream=True)
    parts = list(stream)
    assert parts[0].choices[0].delta.role == "assistant"
    streamed = "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
    assert streamed == choice.message.content
    assert parts[-1].choices[0].finish_reason in ("stop", "length")


def test_errors_arrive_as_openai_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.completions.create(model="gpt-nope", prompt="x", max_tokens=2)
    assert "gpt-nope" in str(nf.value)
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL, prompt="x", max_tokens=2, temperature=3)
    assert bad.value.body["param"] == "temperature"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as long:
        client.completions.create(model=MODEL, prompt="word " * 2000, max_tokens=2)
    assert long.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as cap:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=10_000)
    assert cap.value.body["param"] == "max_tokens"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=client.base_url, api_key="wrong-key-0123456789", max_retries=0).models.list()


def test_reason_returns_rationale_answer_usage_latency(served: RunningServer) -> None:
    with served.client() as http:
        r = http.post("/v1/reason", json={"question": "Tom has 3 apples. Tom buys 2 more. How many?", "max_tokens": 24})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"rationale", "answer", "usage", "latency", "text"}
        assert body["format"] == "ft_cot"
        assert body["usage"]["completion_tokens"] <= 24 and body["latency"]["total_s"] > 0
        assert "END" not in body["text"]  # the student format's stop string ends generation
        unknown = http.post("/v1/reason", json={"question": "q", "format": "nope"})
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "format"
        empty = http.post("/v1/reason", json={"question": ""})
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "question"


def test_error_shapes_for_unknown_routes_and_bad_json(served: RunningServer) -> None:
    with served.client() as http:
        missing = http.get("/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
        bad_json = http.post("/v1/completions", content=b"{nope", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 400 and "error" in bad_json.json()
        too_big = http.post("/v1/completions", content=b"x" * (2 << 20), headers={"Content-Type": "application/json"})
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"
    metrics = httpx.get(f"{served.base_url}/metrics").text
    assert 'cotdistill_http_requests_total{route="/v1/completions",status="200"}' in metrics
    assert "cotdistill_server_time_to_first_token_seconds_bucket" in metrics
    assert served.metric("cotdistill_server_generation_tokens_total") > 0

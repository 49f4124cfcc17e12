"""The transformers engine against a plain forward pass of the same tiny model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cotdistill.teacher.engine import GenerateRequest, SamplingOptions, ScoreInput
from cotdistill.teacher.engines import transformers_engine
from cotdistill.teacher.engines.transformers_engine import (
    GQA_ATTENTION,
    TransformersEngine,
    auto_dtype,
    gqa_sdpa_attention,
)
from tests.unit.teacher.conftest import collect

PROMPTS = ["Tom has 3 apples. Tom buys 2 more.", "A coin", 'Take the last letters of the words in "Ana Lee"']


def reference_logprobs(engine: TransformersEngine, prompt_ids: list[int], generated: list[int]) -> torch.Tensor:
    """log_softmax of the logits that predicted each generated token: [T, V], one unpadded forward."""
    ids = torch.tensor([prompt_ids + generated])
    with torch.inference_mode():
        logits = engine.model(input_ids=ids).logits[0].float()
    start = len(prompt_ids) - 1
    return torch.log_softmax(logits[start : start + len(generated)], dim=-1)


async def test_greedy_topk_matches_a_plain_forward_pass_under_left_padding(engine: TransformersEngine) -> None:
    options = SamplingOptions(n=1, temperature=0.0, max_tokens=12, top_k_logprobs=5)
    completions = await collect(engine, PROMPTS, options)  # different lengths: left padding in one batch
    assert [c.prompt_index for c in completions] == [0, 1, 2]
    for c, ids in zip(completions, engine.encode(PROMPTS), strict=True):
        s = c.scores
        assert c.prompt_tokens == len(ids)
        ref = reference_logprobs(engine, ids, s.token_ids)
        assert s.token_ids == ref.argmax(-1).tolist()  # greedy
        torch.testing.assert_close(torch.tensor(s.token_logprobs), ref.max(-1).values, atol=1e-4, rtol=0)
        top = torch.tensor(s.top_logprobs).view(-1, 5)
        values, cand = ref.topk(5, dim=-1)
        torch.testing.assert_close(top, values, atol=1e-4, rtol=0)
        assert torch.equal(torch.tensor(s.top_ids).view(-1, 5), cand.to(torch.int64))
        assert (top[:, :-1] >= top[:, 1:]).all()  # sorted, highest first
        assert s.k == 5 and s.mode == "raw"


async def test_samples_of_one_prompt_share_its_prefill_and_still_match_a_forward_pass(
    engine: TransformersEngine,
) -> None:
    # n=3 per prompt: one prefill per distinct prompt, its cache repeated for the three rows.
    options = SamplingOptions(n=3, temperature=0.0, max_tokens=6, top_k_logprobs=4)
    forward, prefill_rows = engine.model.forward, []

    def recording(*args: object, **kwargs: torch.Tensor) -> object:
        if kwargs["input_ids"].shape[1] > 1:
            prefill_rows.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    engine.model.forward = recording
    try:
        completions = await collect(engine, PROMPTS, options)
    finally:
        engine.model.forward = forward
    assert prefill_rows == [3]
    assert [(c.prompt_index, c.sample_index) for c in completions] == [(p, s) for p in range(3) for s in range(3)]
    for c in completions:
        ids = engine.encode(PROMPTS)[c.prompt_index]
        ref = reference_logprobs(engine, ids, c.scores.token_ids)
        assert c.scores.token_ids == ref.argmax(-1).tolist()
        torch.testing.assert_close(
            torch.tensor(c.scores.top_logprobs).view(-1, 4), ref.topk(4).values, atol=1e-4, rtol=0
        )


def test_auto_dtype_keeps_bf16_checkpoints_in_bf16_only_on_bf16_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    class Config:
        def __init__(self, dtype: object) -> None:
            self.dtype = dtype

    monkeypatch.setattr(transformers_engine, "native_bf16_cpu", lambda: True)
    assert auto_dtype("cpu", Config(torch.bfloat16)) == "bfloat16"
    assert auto_dtype("cpu", Config("float32")) == "float32"
    assert auto_dtype("cuda:0", Config("float32")) == "bfloat16"
    monkeypatch.setattr(transformers_engine, "native_bf16_cpu", lambda: False)
    assert auto_dtype("cpu", Config(torch.bfloat16)) == "float32"


def test_gqa_attention_equals_transformers_sdpa_under_a_padding_mask() -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    class Attention:
        num_key_value_groups = 7
        is_causal = True

    torch.manual_seed(0)
    q, k, v = torch.randn(4, 14, 5, 64), torch.randn(4, 2, 9, 64), torch.randn(4, 2, 9, 64)
    mask = torch.ones(5, 9, dtype=torch.bool).tril(4).expand(4, 1, 5, 9).clone()
    mask[0, :, :, :3] = False  # row 0 is left-padded
    ours, _ = gqa_sdpa_attention(Attention(), q, k, v, mask, scaling=0.125)
    theirs, _ = sdpa_attention_forward(Attention(), q, k, v, mask, scaling=0.125)  # copies K/V per head
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def gqa_engine(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersEngine]:
    """The tiny teacher with grouped-query attention: 4 query heads on 2 K/V heads."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(tiny_models["teacher"])
    config.num_attention_heads, config.num_key_value_heads = 4, 2
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("gqa-teacher")
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_models["teacher"]).save_pretrained(out)
    loop = asyncio.new_event_loop()
    engine = TransformersEngine(str(out), num_threads=1, device="cpu")
    loop.run_until_complete(engine.start())
    yield engine
    loop.run_until_complete(engine.close())
    loop.close()


async def test_a_gqa_model_under_left_padding_matches_eager_attention(gqa_engine: TransformersEngine) -> None:
    from transformers import AutoModelForCausalLM

    assert gqa_engine.model.config._attn_implementation == GQA_ATTENTION
    eager = AutoModelForCausalLM.from_pretrained(gqa_engine.model_path, attn_implementation="eager").eval()
    options = SamplingOptions(n=2, temperature=0.0, max_tokens=8, top_k_logprobs=5)
    for c in await collect(gqa_engine, PROMPTS, options):
        ids = gqa_engine.encode(PROMPTS)[c.prompt_index]
        with torch.inference_mode():
            logits = eager(input_ids=torch.tensor([ids + c.scores.token_ids])).logits[0].float()
        ref = torch.log_softmax(logits[len(ids) - 1 : len(ids) - 1 + len(c.scores.token_ids)], dim=-1)
        assert c.scores.token_ids == ref.argmax(-1).tolist()
        torch.testing.assert_close(
            torch.tensor(c.scores.top_logprobs).view(-1, 5), ref.topk(5).values, atol=1e-4, rtol=0
        )


async def test_sampled_logprobs_raw_and_processed_modes(engine: TransformersEngine) -> None:
    prompt = PROMPTS[:1]
    ids = engine.encode(prompt)[0]
    for mode in ("raw", "processed"):
        options = SamplingOptions(n=2, temperature=0.5, max_tokens=8, top_k_logprobs=3, seed=7, logprob_mode=mode)
        for c in await collect(engine, prompt, options):
            ref = reference_logprobs(engine, ids, c.scores.token_ids)
            if mode == "processed":
                ref = torch.log_softmax(ref / 0.5, dim=-1)  # log_softmax(log_softmax(z)/T) == log_softmax(z/T)
            picked = ref.gather(1, torch.tensor(c.scores.token_ids)[:, None]).squeeze(1)
            torch.testing.assert_close(torch.tensor(c.scores.token_logprobs), picked, atol=1e-4, rtol=0)
            assert c.scores.mode == mode


async def test_seeded_samples_reproduce_whatever_shares_the_batch(engine: TransformersEngine) -> None:
    options = SamplingOptions(n=3, temperature=1.0, max_tokens=10, seed=123)
    alone = await collect(engine, PROMPTS[:1], options)
    other = SamplingOptions(n=5, temperature=1.0, max_tokens=6)
    together, _ = await asyncio.gather(collect(engine, PROMPTS[:1], options, "a"), collect(engine, PROMPTS, other, "b"))
    assert [c.scores.token_ids for c in alone] == [c.scores.token_ids for c in together]
    assert len({tuple(c.scores.token_ids) for c in alone}) > 1  # the n samples differ from each other
    reseeded = await collect(engine, PROMPTS[:1], SamplingOptions(n=3, temperature=1.0, max_tokens=10, seed=124))
    assert [c.scores.token_ids for c in reseeded] != [c.scores.token_ids for c in alone]


async def test_length_stop_strings_and_eos(engine: TransformersEngine) -> None:
    options = SamplingOptions(n=4, temperature=1.0, max_tokens=7, seed=1)
    for c in await collect(engine, PROMPTS, options):
        eos = c.scores.token_ids[-1] in engine.eos_ids
        assert c.finish_reason == ("stop" if eos else "length")
        assert len(c.scores.token_ids) == 7 or eos
    # Stop on a character the random model emits often: the text ends before it.
    sampled = await collect(engine, PROMPTS[:1], SamplingOptions(n=8, temperature=1.0, max_tokens=40, seed=3))
    common = max("aeiost ", key=lambda ch: sum(ch in c.text for c in sampled))
    stopped = await collect(
        engine, PROMPTS[:1], SamplingOptions(n=8, temperature=1.0, max_tokens=40, seed=3, stop=(common,))
    )
    hits = [c for c in stopped if c.finish_reason == "stop" and c.scores.token_ids[-1] not in engine.eos_ids]
    assert hits, "no sample hit the stop string"
    for c in hits:
        assert common not in c.text
        assert common in engine.tokenizer.decode(c.scores.token_ids)


async def test_abort_frees_the_request_and_the_engine_keeps_serving(engine: TransformersEngine) -> None:
    options = SamplingOptions(n=64, temperature=1.0, max_tokens=400)
    request = GenerateRequest("long", PROMPTS[:1], engine.encode(PROMPTS[:1]), options)
    stream = engine.generate(request)
    task = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.3)
    await engine.abort("long")
    task.cancel()
    await stream.aclose()
    assert engine.active_requests() == 0 and engine.queue_depth() == 0
    quick = await asyncio.wait_for(collect(engine, PROMPTS[:1], SamplingOptions(max_tokens=3, temperature=0)), 30)
    assert len(quick) == 1


async def test_score_matches_a_forward_pass(engine: TransformersEngine) -> None:
    items = [ScoreInput("Tom has", " 3 apples. END"), ScoreInput("", "A coin"), ScoreInput("Ana", " Lee")]
    outputs = await engine.score(items, 4)
    for item, out in zip(items, outputs, strict=True):
        prompt = engine.encode([item.prompt])[0] or [engine.tokenizer.bos_token_id]
        completion = engine.encode([item.completion], special_tokens=False)[0]
        ref = reference_logprobs(engine, prompt, completion)
        assert out.scores.token_ids == completion and out.prompt_tokens == len(prompt)
        picked = ref.gather(1, torch.tensor(completion)[:, None]).squeeze(1)
        torch.testing.assert_close(torch.tensor(out.scores.token_logprobs), picked, atol=1e-4, rtol=0)
        torch.testing.assert_close(
            torch.tensor(out.scores.top_logprobs).view(-1, 4), ref.topk(4).values, atol=1e-4, rtol=0
        )

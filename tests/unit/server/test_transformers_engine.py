"""The continuous-batching engine on a real tiny checkpoint: same tokens as transformers' generate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cotdistill.server.engine.base import EngineLoadError, SamplingParams
from cotdistill.server.engine.transformers_engine import Seq2SeqEngine, TransformersEngine

PROMPTS = [
    "Tom has 3 apples. Tom buys 2 more. How many apples does Tom have? ###",
    'Take the last letters of the words in "Ana Lee" and concatenate them. ###',
    "A coin",
    "Sam",
]


@pytest.fixture(scope="module")
def engine(tiny_models: dict[str, Path]) -> Iterator[TransformersEngine]:
    steps: list[int] = []
    eng = TransformersEngine.load(tiny_models["student"], max_batch_size=8, on_step=steps.append)
    eng.steps = steps  # type: ignore[attr-defined]
    yield eng
    asyncio.run(eng.close())


async def _run(engine: TransformersEngine, prompt: str, params: SamplingParams, delay: float = 0.0):  # type: ignore[no-untyped-def]
    await asyncio.sleep(delay)
    ids = engine.tokenize(prompt)
    text, tokens, logprobs, finish = "", [], [], None
    async for out in engine.generate(ids, params, "t"):
        text += out.text
        tokens += out.token_ids
        logprobs += out.logprobs or []
        finish = out.finish_reason
    return ids, text, tokens, logprobs, finish


def _reference(engine: TransformersEngine, ids: list[int], n: int) -> list[int]:
    out = engine.model.generate(
        torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=engine.pad_token_id
    )
    return out[0, len(ids) :].tolist()


def test_requests_joining_a_running_batch_decode_exactly_like_generate_alone(engine: TransformersEngine) -> None:
    async def main():  # type: ignore[no-untyped-def]
        # Staggered arrivals: later requests join mid-generation (different prompt lengths).
        return await asyncio.gather(
            *(
                _run(engine, p, SamplingParams(max_tokens=24, temperature=0), delay=i * 0.004)
                for i, p in enumerate(PROMPTS * 2)
            )
        )

    before = len(engine.steps)  # type: ignore[attr-defined]
    for ids, _, tokens, _, finish in asyncio.run(main()):
        reference = _reference(engine, ids, 24)
        assert tokens == reference[: len(tokens)]
        assert finish == ("length" if len(tokens) == 24 else "stop")
    sizes = engine.steps[before:]  # type: ignore[attr-defined]
    assert max(sizes) > 1  # requests really shared forward passes
    assert len(sizes) < 8 * 24  # far fewer passes than one request at a time


def test_seeded_sampling_does_not_depend_on_batch_company(engine: TransformersEngine) -> None:
    params = SamplingParams(max_tokens=16, temperature=1.0, seed=11)

    async def alone():  # type: ignore[no-untyped-def]
        return await _run(engine, PROMPTS[0], params)

    async def crowded():  # type: ignore[no-untyped-def]
        others = [_run(engine, p, SamplingParams(max_tokens=16, temperature=1.0)) for p in PROMPTS[1:]]
        return (await asyncio.gather(_run(engine, PROMPTS[0], params), *others))[0]

    assert asyncio.run(alone())[2] == asyncio.run(crowded())[2]


def test_logprobs_are_raw_log_softmax_and_top_k_sorted(engine: TransformersEngine) -> None:
    ids, _, tokens, logprobs, _ = asyncio.run(
        _run(engine, PROMPTS[2], SamplingParams(max_tokens=3, temperature=0.5, logprobs=4))
    )
    assert len(logprobs) == len(tokens)
    with torch.inference_mode():
        first = torch.log_softmax(engine.model(torch.tensor([ids])).logits[0, -1].float(), -1)
    entry = logprobs[0]
    assert entry.token_id == tokens[0]
    assert entry.logprob == pytest.approx(first[tokens[0]].item(), abs=1e-4)
    assert list(entry.top_logprobs) == sorted(entry.top_logprobs, reverse=True) and len(entry.top_ids) == 4
    assert entry.top_logprobs[0] == pytest.approx(first.max().item(), abs=1e-4)


def test_top_p_tiny_is_greedy(engine: TransformersEngine) -> None:
    greedy = asyncio.run(_run(engine, PROMPTS[1], SamplingParams(max_tokens=10, temperature=0)))[2]
    nucleus = asyncio.run(_run(engine, PROMPTS[1], SamplingParams(max_tokens=10, temperature=1.0, top_p=1e-6)))[2]
    assert nucleus == greedy


def test_cancelling_a_request_removes_its_row(engine: TransformersEngine) -> None:
    async def main() -> int:
        ids = engine.tokenize(PROMPTS[0])
        stream = engine.generate(ids, SamplingParams(max_tokens=200, temperature=1.0), "c")
        await anext(stream)
        await stream.aclose()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if engine.stats().running == 0:
                return 0
        return engine.stats().running

    assert asyncio.run(main()) == 0


def test_bad_checkpoints_are_refused_with_the_reason(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    with pytest.raises(EngineLoadError, match="not a directory"):
        TransformersEngine.load(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EngineLoadError, match="failed to load"):
        TransformersEngine.load(tmp_path)


def test_encoder_decoder_students_batch_and_match_generate(tiny_models: dict[str, Path]) -> None:
    t5 = TransformersEngine.load(tiny_models["t5"], max_batch_size=8)
    assert isinstance(t5, Seq2SeqEngine)

    async def main():  # type: ignore[no-untyped-def]
        runs = (
            _run(t5, p, SamplingParams(max_tokens=10, temperature=0), delay=i * 0.002) for i, p in enumerate(PROMPTS)
        )
        try:
            return await asyncio.gather(*runs)
        finally:
            await t5.close()

    for ids, _, tokens, _, _ in asyncio.run(main()):
        reference = t5.model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False)[0, 1:].tolist()
        assert tokens == reference[: len(tokens)] and tokens

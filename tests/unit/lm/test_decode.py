"""A static batch decoded through ``cotdistill.common.lm`` equals what the model server serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from cotdistill.common.lm import choice_seed
from cotdistill.common.lm.decode import generate
from cotdistill.common.lm.loading import LoadedLM, load_lm
from cotdistill.server.engine.base import SamplingParams
from cotdistill.server.engine.transformers_engine import TransformersEngine

PROMPTS = ["Tom has 3 apples. Tom buys 2 more. ###", "A coin", 'Take the last letters of "Ana Lee" ###']


@pytest.fixture(scope="module")
def student(tiny_models: dict[str, Path]) -> LoadedLM:
    return load_lm(tiny_models["student"], dtype="float32")


def _ids(lm: LoadedLM, texts: list[str]) -> list[list[int]]:
    return [list(x) for x in lm.tokenizer(texts)["input_ids"]]


def test_greedy_batches_equal_transformers_generate_per_prompt(student: LoadedLM) -> None:
    prompts = _ids(student, PROMPTS)  # different lengths: left padding
    with torch.inference_mode():
        out = generate(student, prompts, max_tokens=12)
        for ids, decoded in zip(prompts, out, strict=True):
            ref = student.model.generate(
                torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=student.pad_id
            )[0, len(ids) :].tolist()
            assert decoded.token_ids == ref[: len(decoded.token_ids)]
            assert decoded.finish_reason == ("stop" if decoded.token_ids[-1] in student.eos_ids else "length")


def test_encoder_decoder_greedy_equals_generate(tiny_models: dict[str, Path]) -> None:
    t5 = load_lm(tiny_models["t5"])
    prompts = _ids(t5, PROMPTS)
    with torch.inference_mode():
        for ids, decoded in zip(prompts, generate(t5, prompts, max_tokens=8), strict=True):
            ref = t5.model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)[0, 1:].tolist()
            assert decoded.token_ids == ref[: len(decoded.token_ids)] and decoded.token_ids


@pytest.mark.parametrize("stop", [(), ("e", " t")])
def test_seeded_samples_are_the_model_servers_tokens_and_text(
    student: LoadedLM, tiny_models: dict[str, Path], stop: tuple[str, ...]
) -> None:
    prompts = _ids(student, PROMPTS)
    k, seed = 2, 41
    with torch.inference_mode():
        ours = generate(
            student,
            [p for p in prompts for _ in range(k)],
            max_tokens=16,
            temperature=0.9,
            top_p=0.95,
            stop=stop,
            seeds=[choice_seed(seed, j) for _ in prompts for j in range(k)],
        )
    server = TransformersEngine.load(tiny_models["student"], max_batch_size=8)

    async def serve(ids: list[int], j: int) -> tuple[list[int], str]:
        params = SamplingParams(max_tokens=16, temperature=0.9, top_p=0.95, stop=stop, seed=choice_seed(seed, j))
        tokens, text = [], ""
        async for step in server.generate(ids, params, f"r{j}"):
            tokens += step.token_ids
            text += step.text
        return tokens, text

    async def main() -> list[tuple[list[int], str]]:
        try:
            return await asyncio.gather(*(serve(p, j) for p in prompts for j in range(k)))
        finally:
            await server.close()

    served = asyncio.run(main())
    assert [d.token_ids for d in ours] == [t for t, _ in served]
    assert [d.text for d in ours] == [text for _, text in served]
    assert len({tuple(d.token_ids) for d in ours}) > 1  # really sampled, not one greedy answer
    if stop:  # the stop strings did end some rows early, at the same token as the server
        assert any(d.finish_reason == "stop" and d.token_ids[-1] not in student.eos_ids for d in ours)


def test_a_stop_string_ends_the_row_and_is_cut(student: LoadedLM) -> None:
    prompts = _ids(student, PROMPTS[:1])
    with torch.inference_mode():
        free = generate(student, prompts * 6, max_tokens=30, temperature=1.0, seeds=list(range(6)))
    common = max("aeiost", key=lambda ch: sum(ch in d.text for d in free))
    with torch.inference_mode():
        stopped = generate(student, prompts * 6, max_tokens=30, temperature=1.0, seeds=list(range(6)), stop=(common,))
    hits = [(f, s) for f, s in zip(free, stopped, strict=True) if common in f.text]
    assert hits, "no sample contains the stop string"
    for f, s in hits:
        assert s.finish_reason == "stop" and common not in s.text
        assert f.text.startswith(s.text) and len(s.token_ids) <= len(f.token_ids)

"""A started transformers engine on the tiny teacher, shared by the engine tests of a module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cotdistill.teacher.engine import Completion, GenerateRequest, SamplingOptions
from cotdistill.teacher.engines.transformers_engine import TransformersEngine


@pytest.fixture(scope="module")
def engine(tiny_models: dict[str, Path]) -> Iterator[TransformersEngine]:
    loop = asyncio.new_event_loop()
    eng = TransformersEngine(str(tiny_models["teacher"]), num_threads=1, max_batch_sequences=64)
    loop.run_until_complete(eng.start())
    yield eng
    loop.run_until_complete(eng.close())
    loop.close()


async def collect(
    engine: TransformersEngine, prompts: list[str], options: SamplingOptions, rid: str = "r"
) -> list[Completion]:
    """Every completion of one request, sorted by (prompt, sample)."""
    request = GenerateRequest(rid, prompts, engine.encode(prompts), options)
    out = [c async for c in engine.generate(request)]
    return sorted(out, key=lambda c: (c.prompt_index, c.sample_index))


async def first(stream: AsyncIterator[Completion]) -> Completion:
    async for item in stream:
        return item
    raise AssertionError("empty stream")

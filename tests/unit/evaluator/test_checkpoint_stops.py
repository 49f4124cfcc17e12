"""A stop string the student's tokenizer cannot spell still stops and cuts, never an evaluation failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cotdistill.evaluator.backends import GenerationParams, TransformersGenerator


def test_unspellable_stop_strings_are_cut_after_decoding(tiny_models: dict[str, Path]) -> None:
    pytest.importorskip("transformers")
    gen = TransformersGenerator(str(tiny_models["student"]))
    asyncio.run(gen.open())
    from transformers import StopStringCriteria

    # The Metaspace student has no token with a newline: transformers refuses "\n\nQ:" outright.
    with pytest.raises(ValueError):
        StopStringCriteria(gen._tokenizer, ["\n\nQ:"])
    params = GenerationParams(max_tokens=8, stop=("\n\nQ:", "the"))
    texts = asyncio.run(gen.generate(["Q: what is 2 + 3?\nLet's think step by step"], params))
    assert len(texts) == 1 and len(texts[0]) == 1
    assert "\n\nQ:" not in texts[0][0] and "the" not in texts[0][0]

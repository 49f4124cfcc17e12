"""Token strings from an OpenAI-compatible API back to the teacher's ids."""

from __future__ import annotations

from pathlib import Path

from cotdistill.teacher.engines.openai_engine import TokenMapper


def test_token_mapper_reads_vllm_token_ids_and_tokenizer_strings(tiny_models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["teacher"])
    mapper = TokenMapper(tokenizer, token_ids_param=False)
    apples = tokenizer.encode(" apples", add_special_tokens=False)
    assert [mapper.to_id(tokenizer.decode([i])) for i in apples] == apples
    # A string several ids decode to (a partial UTF-8 byte) is ambiguous: no candidate id, but a
    # sampled token still gets the lowest id that decodes to it.
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    ambiguous = next(t for t in texts if texts.count(t) > 1)
    assert mapper.to_id(ambiguous) is None and mapper.sampled_id(ambiguous) == texts.index(ambiguous)
    assert TokenMapper(None, token_ids_param=True).to_id("token_id:42") == 42
    assert TokenMapper(None, token_ids_param=True).to_id("apples") is None

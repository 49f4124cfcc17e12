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


def test_sampled_ids_read_back_the_strings_servers_write(real_tokenizers: dict[str, Path]) -> None:
    """The strings an OpenAI-style server writes for a generated sequence (the text each token adds,
    ``bytes:\\x..`` for part of a character, the whole character on the token completing it) map
    back to ids that spell the same bytes, for each real tokenizer (byte-level and byte-fallback)."""
    import random

    from transformers import AutoTokenizer

    from cotdistill.common.token_strings import token_strings

    split_chars = 0
    text = "Tom has 3 apples 🍎 and 2½ pears — naïve café, 日本語 too.\n  Answer: 5"
    for name, path in real_tokenizers.items():
        tokenizer = AutoTokenizer.from_pretrained(path)
        mapper = TokenMapper(tokenizer, token_ids_param=False)
        strings = token_strings(tokenizer)
        ids = tokenizer.encode(text, add_special_tokens=False)
        written = [piece.token for piece in strings.pieces(ids, [0])]
        split_chars += any(t.startswith("bytes:") for t in written)  # an emoji or CJK split across tokens
        got = mapper.sampled_ids(written)
        assert b"".join(strings.raw_bytes(i) for i in got if i is not None) == b"".join(
            strings.raw_bytes(i) for i in ids
        ), name
        # Random byte-level garbage (what a random model writes): U+FFFD is ambiguous, yet nearly
        # every position maps to an id that replays the same string.
        rng = random.Random(0)
        singles = [i for i in range(len(tokenizer)) if len(strings.raw_bytes(i)) == 1][:256]
        noise = [rng.choice(singles) for _ in range(64)]
        mapped = mapper.sampled_ids([p.token for p in strings.pieces(noise, [0])])
        assert len(mapped) == len(noise) and sum(i is not None for i in mapped) >= 0.9 * len(noise), name
        # A long generated text (past Python's recursion limit) maps too.
        long_ids = tokenizer.encode(text * 120, add_special_tokens=False)
        got = mapper.sampled_ids([piece.token for piece in strings.pieces(long_ids, [0])])
        assert len(long_ids) > 2000 and b"".join(strings.raw_bytes(i) for i in got if i is not None) == b"".join(
            strings.raw_bytes(i) for i in long_ids
        ), name
    assert split_chars >= 2  # byte-level Qwen and SmolLM2 split characters; Gemma has whole ones

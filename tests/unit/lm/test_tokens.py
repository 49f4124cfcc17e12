"""The token-level facts every service takes from ``cotdistill.common.lm``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from cotdistill.common.lm import (
    choice_seed,
    completion_text,
    context_length,
    cut_at_stop,
    end_of_turn_ids,
    ensure_pad_token,
    eos_ids,
    pad_id,
    tokenizer_content_hash,
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PLAIN_END = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} END\n{% endfor %}"


def _tokenizer(tiny_models: dict[str, Path]):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models["teacher"])


def test_the_eos_set_joins_generation_config_model_config_tokenizer_and_end_of_turn(
    tiny_models: dict[str, Path],
) -> None:
    tok = _tokenizer(tiny_models)
    base = tok.eos_token_id
    assert eos_ids(tok) == {base}  # no chat template: the tokenizer's EOS only
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_ids(tok) == {im_end}
    eos = eos_ids(tok, SimpleNamespace(eos_token_id=7), SimpleNamespace(eos_token_id=[8, base]))
    assert eos == {base, im_end, 7, 8} and isinstance(eos, frozenset)
    # A template that ends a turn with ordinary text adds nothing: "END" is not a special token.
    tok.chat_template = PLAIN_END
    assert end_of_turn_ids(tok) == set() and eos_ids(tok) == {base}


def test_pad_id_has_one_fallback_rule() -> None:
    assert pad_id(SimpleNamespace(pad_token_id=3, eos_token_id=2), {2, 9}) == 3
    assert pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=2), {9, 5}) == 2
    assert pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=None), {9, 5}) == 5
    assert pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=None)) == 0
    assert pad_id(SimpleNamespace(pad_token_id=0, eos_token_id=2)) == 0  # id 0 is a real pad id


def test_ensure_pad_token_follows_the_same_rule(tiny_models: dict[str, Path]) -> None:
    tok = _tokenizer(tiny_models)
    tok.pad_token = None
    ensure_pad_token(tok)
    assert tok.pad_token_id == tok.eos_token_id == pad_id(tok)


def test_context_length() -> None:
    assert context_length(SimpleNamespace(max_position_embeddings=512)) == 512
    assert context_length(SimpleNamespace(max_position_embeddings=512), cap=100) == 100
    assert context_length(SimpleNamespace(max_position_embeddings=None)) == 2048
    assert context_length(SimpleNamespace(text_config=SimpleNamespace(max_position_embeddings=4096))) == 4096
    assert context_length(SimpleNamespace(is_encoder_decoder=True)) == 512
    assert context_length(SimpleNamespace(is_encoder_decoder=True, n_positions=1024), cap=2000) == 1024


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        ("a. b. c", (".",), "a"),
        ("x END y", ("END", " y"), "x "),
        ("x END y", (" y", "END"), "x "),  # the earliest occurrence, whatever the order
        ("none", ("z",), "none"),
        ("keep all", ("",), "keep all"),  # an empty stop string never cuts
        ("ab", ("ab",), ""),
    ],
)
def test_cut_at_the_earliest_stop(text: str, stop: tuple[str, ...], expected: str) -> None:
    assert cut_at_stop(text, stop) == expected


def test_completion_text_keeps_the_leading_space_a_metaspace_decoder_drops(tiny_models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["student"])  # Metaspace BPE
    prompt = tok("Tom has", add_special_tokens=False)["input_ids"]
    completion = tok(" 3 apples", add_special_tokens=False)["input_ids"]
    assert tok.decode(completion, skip_special_tokens=True) == "3 apples"  # the space is lost alone
    assert completion_text(tok, prompt, completion) == " 3 apples"
    assert completion_text(tok, prompt, completion, context=False) == "3 apples"


def test_choice_seeds_differ_per_choice_and_stay_in_range() -> None:
    assert choice_seed(None, 3) is None
    assert [choice_seed(5, j) for j in range(3)] == [5, 6, 7]
    assert choice_seed(2**63 - 1, 1) == 0


def test_the_tokenizer_hash_is_stable_across_copies_and_changes_with_the_vocabulary(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    tok = _tokenizer(tiny_models)
    digest = tokenizer_content_hash(tok)
    assert len(digest) == 64 and tokenizer_content_hash(tok) == digest
    tok.save_pretrained(tmp_path / "copy")
    assert tokenizer_content_hash(AutoTokenizer.from_pretrained(tmp_path / "copy")) == digest
    assert tokenizer_content_hash(AutoTokenizer.from_pretrained(tiny_models["student"])) != digest
    grown = AutoTokenizer.from_pretrained(tiny_models["teacher"])
    grown.add_tokens(["<new>"])
    assert tokenizer_content_hash(grown) != digest

"""Tiny models build from config, load with transformers, and the two tokenizers really differ."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from cotdistill.pipeline.tiny_models import build_causal_lm, reasoning_corpus, train_tokenizer

TEXT = "Tom has 12 apples. 12 + 3 = 15. --> 15 END"


def test_pair_loads_and_generates(tiny_models: dict[str, Path]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_models["teacher"])
    model = AutoModelForCausalLM.from_pretrained(tiny_models["teacher"])
    assert model.config.head_dim == 32
    ids = tok(TEXT, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 4
    t5 = AutoModelForSeq2SeqLM.from_pretrained(tiny_models["t5"])
    assert t5.config.is_encoder_decoder


def test_tokenizers_differ_but_both_round_trip(tiny_models: dict[str, Path]) -> None:
    teacher = AutoTokenizer.from_pretrained(tiny_models["teacher"])
    student = AutoTokenizer.from_pretrained(tiny_models["student"])
    assert teacher.get_vocab() != student.get_vocab()
    t_tokens = teacher.convert_ids_to_tokens(teacher(TEXT).input_ids)
    s_tokens = student.convert_ids_to_tokens(student(TEXT).input_ids)
    assert any(t.startswith("Ġ") for t in t_tokens) and any(t.startswith("▁") for t in s_tokens)
    for tok in (teacher, student):
        assert tok.decode(tok(TEXT).input_ids, skip_special_tokens=True) == TEXT


def test_weights_are_seeded(tmp_path: Path) -> None:
    tok = train_tokenizer(reasoning_corpus(50), "byte_bpe", 300)
    a = AutoModelForCausalLM.from_pretrained(build_causal_lm(tmp_path / "a", tok, seed=7))
    b = AutoModelForCausalLM.from_pretrained(build_causal_lm(tmp_path / "b", tok, seed=7))
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)


def test_vocab_padding_adds_embedding_rows(tmp_path: Path) -> None:
    tok = train_tokenizer(reasoning_corpus(50), "metaspace_bpe", 150)
    model = AutoModelForCausalLM.from_pretrained(build_causal_lm(tmp_path / "m", tok, vocab_padding=10))
    assert model.config.vocab_size == len(tok) + 10

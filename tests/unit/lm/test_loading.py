"""Checkpoints load from safetensors only, with the facts every scheduler needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from cotdistill.common.lm.loading import load_lm


def test_a_checkpoint_loads_with_its_eos_set_pad_id_and_context(tiny_models: dict[str, Path]) -> None:
    lm = load_lm(tiny_models["student"], dtype="float32")
    assert not lm.model.training and next(lm.model.parameters()).dtype == torch.float32
    assert lm.eos_ids == {lm.tokenizer.eos_token_id} and lm.pad_id == lm.tokenizer.pad_token_id
    assert lm.context_length == lm.model.config.max_position_embeddings and not lm.encoder_decoder
    assert load_lm(tiny_models["student"], max_context=100).context_length == 100
    assert load_lm(tiny_models["t5"]).encoder_decoder


def test_pickled_weights_are_never_loaded(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_models["student"], pickled)
    model = AutoModelForCausalLM.from_pretrained(pickled)
    for file in pickled.glob("*.safetensors"):
        file.unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")  # what a pickled checkpoint holds
    with pytest.raises(OSError, match="safetensors"):
        load_lm(pickled)

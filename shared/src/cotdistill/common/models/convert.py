"""GGUF -> a normal Hugging Face directory (safetensors + tokenizer + chat template + generation config).

transformers dequantizes GGUF tensors to plain float tensors on load; what it refuses is to save a
model that still carries the GGUF quantization marker. Dropping that marker gives a directory that
transformers and vLLM both load like any other checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_DTYPES = ("bfloat16", "float16", "float32")


def convert_gguf(gguf: Path, out_dir: Path, *, dtype: str, context_length: int | None, tokenizer_only: bool) -> None:
    """Write the tokenizer (and unless ``tokenizer_only`` the weights) of ``gguf`` into ``out_dir``."""
    import torch
    from transformers import AutoTokenizer

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, not {dtype!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    for flag, value in _special_token_flags(gguf).items():
        # transformers' GGUF tokenizer conversion drops these (Gemma then loses its BOS, which the
        # model needs at position 0); setting them rebuilds the post-processor that adds the token.
        if getattr(tokenizer, flag, value) != value:
            setattr(tokenizer, flag, value)
    if context_length:
        # GGUF tokenizers come back with an "infinite" model_max_length; the model's window is real.
        tokenizer.model_max_length = context_length
    tokenizer.save_pretrained(str(out_dir))
    if tokenizer_only:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(out_dir))
        _drop_quantization_marker(out_dir / "config.json")
        return

    from transformers import AutoModelForCausalLM

    # Dequantizing is fastest in float32 (the kernels compute in it); cast once afterwards.
    model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model = model.to(getattr(torch, dtype))
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.hf_quantizer = None
    gen = model.generation_config
    if tokenizer.eos_token_id is not None and gen.eos_token_id is None:
        gen.eos_token_id = tokenizer.eos_token_id
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else gen.eos_token_id
    model.save_pretrained(str(out_dir), safe_serialization=True)
    _drop_quantization_marker(out_dir / "config.json")


def _special_token_flags(gguf: Path) -> dict[str, bool]:
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields
    flags = {}
    for flag in ("add_bos_token", "add_eos_token"):
        field = fields.get(f"tokenizer.ggml.{flag}")
        if field is not None:
            flags[flag] = bool(field.contents())
    return flags


def _drop_quantization_marker(config_path: Path) -> None:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.pop("quantization_config", None) is not None:
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

"""Checkpoint loading, one way for every service: safetensors weights only, no remote code.

A model directory may hold pickled ``*.bin`` weights (loading those runs arbitrary code through
pickle) or ``auto_map`` code (``trust_remote_code``): neither is ever used unless a caller asks
for remote code explicitly. Paths reach here after the service's path policy
(``cotdistill.common.path_policy``) and ``resolve_model``; nothing here widens what may be opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cotdistill.common.lm.tokens import context_length, eos_ids, pad_id


def load_config(path: str | Path, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def load_tokenizer(path: str | Path, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def load_model(
    path: str | Path,
    *,
    dtype: Any = None,
    config: Any = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> Any:
    """The model of a checkpoint directory (causal LM, or seq2seq when its config says
    ``is_encoder_decoder``), from safetensors only. ``dtype``: a torch dtype or its name
    (``"float32"``, ``"bfloat16"``); None keeps transformers' default (float32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    if config is None:
        config = load_config(path, trust_remote_code=trust_remote_code)
    loader: Any = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    return loader.from_pretrained(str(path), **kwargs)


@dataclass
class LoadedLM:
    """A model ready to decode, with the facts every scheduler needs (see ``tokens``)."""

    model: Any
    tokenizer: Any
    path: str
    encoder_decoder: bool
    eos_ids: frozenset[int]
    pad_id: int
    context_length: int
    vocab_size: int

    @property
    def eos_token_id(self) -> int | None:
        """The tokenizer's own EOS (a document boundary, e.g. to start an empty prompt from)."""
        value = self.tokenizer.eos_token_id
        return int(value) if value is not None else None


def describe(model: Any, tokenizer: Any, path: str | Path, *, max_context: int = 0) -> LoadedLM:
    """The :class:`LoadedLM` of an already loaded model and tokenizer."""
    config = model.config
    eos = eos_ids(tokenizer, config, getattr(model, "generation_config", None))
    return LoadedLM(
        model=model,
        tokenizer=tokenizer,
        path=str(path),
        encoder_decoder=bool(getattr(config, "is_encoder_decoder", False)),
        eos_ids=eos,
        pad_id=pad_id(tokenizer, eos),
        context_length=context_length(config, max_context),
        vocab_size=int(config.vocab_size),
    )


def load_lm(
    path: str | Path,
    *,
    dtype: Any = None,
    device: Any = None,
    attn_implementation: str | None = None,
    max_context: int = 0,
    trust_remote_code: bool = False,
) -> LoadedLM:
    """Tokenizer and model of a checkpoint directory, in eval mode on ``device``.

    ``attn_implementation``: tried first; an architecture that cannot plug it in keeps its
    default. ``max_context`` > 0 caps the context length. Loader errors propagate: each service
    maps them to its own error (a failed reload, a failed precondition).
    """
    config = load_config(path, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    common = {"dtype": dtype, "config": config, "trust_remote_code": trust_remote_code}
    if attn_implementation is not None:
        try:
            model = load_model(path, attn_implementation=attn_implementation, **common)
        except ValueError:  # an architecture without pluggable attention keeps its default
            model = load_model(path, **common)
    else:
        model = load_model(path, **common)
    if device is not None:
        model = model.to(device)
    model.eval()
    return describe(model, tokenizer, path, max_context=max_context)

"""What a model directory holds, read from its files without loading the weights."""

from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path
from typing import Any

from cotdistill.common.models.cache import read_manifest


def safetensors_params(model_dir: Path) -> int:
    """Parameter count from the safetensors headers (8-byte length + JSON), no tensor is read."""
    total = 0
    for file in sorted(model_dir.glob("*.safetensors")):
        with file.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        total += sum(prod(meta["shape"]) for key, meta in header.items() if key != "__metadata__")
    return total


def chat_template_of(model_dir: Path) -> str | None:
    """The default chat template (``chat_template.jinja`` or ``tokenizer_config.json``), if any."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = _json(model_dir / "tokenizer_config.json")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def tokenizer_size(model_dir: Path) -> int | None:
    data = _json(model_dir / "tokenizer.json")
    if not data:
        return None
    vocab = data.get("model", {}).get("vocab", {})
    ids = set(vocab.values()) if isinstance(vocab, dict) else set(range(len(vocab)))
    ids.update(tok["id"] for tok in data.get("added_tokens", []))
    return len(ids)


def model_info(model_dir: Path) -> dict[str, Any]:
    """Params, vocab, context length, chat template and provenance of a Hugging Face directory."""
    config = _json(model_dir / "config.json")
    text = config.get("text_config", config)
    tok = _json(model_dir / "tokenizer_config.json")
    manifest = read_manifest(model_dir) or {}
    template = chat_template_of(model_dir)
    return {
        "path": str(model_dir),
        "model_type": config.get("model_type"),
        "architectures": config.get("architectures"),
        "params": safetensors_params(model_dir) or None,
        "dtype": config.get("dtype") or config.get("torch_dtype"),
        "vocab_size": text.get("vocab_size"),
        "tokenizer_size": tokenizer_size(model_dir),
        "context_length": text.get("max_position_embeddings"),
        "eos_token": tok.get("eos_token"),
        "pad_token": tok.get("pad_token"),
        "bos_token": tok.get("bos_token"),
        "chat_template": template,
        "weights": bool(any(model_dir.glob("*.safetensors"))),
        "source": manifest.get("source"),
    }


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

"""Architectures the GPU benchmarks build with random weights (no download: throughput, MFU and
memory do not depend on the weights' values, only on the shapes)."""

from __future__ import annotations

from typing import Any

ARCHITECTURES: dict[str, dict[str, Any]] = {
    # Qwen2.5-0.5B(-Instruct / -Coder): 494M parameters, tied embeddings, vocabulary 151,936.
    "qwen2.5-0.5b": {
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    },
    # SmolLM2-135M(-Instruct): 134.5M parameters, tied embeddings, vocabulary 49,152.
    "smollm2-135m": {
        "model_type": "llama",
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "vocab_size": 49152,
        "max_position_embeddings": 8192,
        "rope_theta": 100000.0,
        "tie_word_embeddings": True,
    },
    # For the CPU test of the scripts: a few seconds per step on a laptop core.
    "tiny": {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "vocab_size": 512,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": True,
    },
}


def build_config(name: str) -> Any:
    from transformers import AutoConfig

    spec = dict(ARCHITECTURES[name])
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def save_random_model(name: str, out_dir: str, seed: int = 0) -> str:
    """A random-weight Hugging Face directory of architecture ``name`` (bf16 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(build_config(name), dtype=torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir

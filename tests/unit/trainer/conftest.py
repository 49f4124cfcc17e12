"""Fixtures of the trainer tests: tokenizers and tiny models for the synthetic copy task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.trainer import synthetic


@pytest.fixture(scope="session")
def task_tokenizers() -> dict[str, Any]:
    """Teacher (byte-level BPE) and student (Metaspace BPE) tokenizers of the copy task."""
    from cotdistill.pipeline.tiny_models import train_tokenizer

    texts = synthetic.corpus()
    return {
        "teacher": train_tokenizer(texts, "byte_bpe", 300),
        "student": train_tokenizer(texts, "metaspace_bpe", 100),
    }


@pytest.fixture(scope="session")
def task_models(tmp_path_factory: pytest.TempPathFactory, task_tokenizers: dict[str, Any]) -> dict[str, Path]:
    """A tiny Llama student, a padded-vocabulary twin, a T5 student and the teacher tokenizer dir."""
    from cotdistill.pipeline.tiny_models import build_causal_lm, build_t5

    root = tmp_path_factory.mktemp("trainer-models")
    student = task_tokenizers["student"]
    task_tokenizers["teacher"].save_pretrained(root / "teacher_tokenizer")
    return {
        "student": build_causal_lm(root / "student", student, hidden_size=64, num_layers=2),
        "padded": build_causal_lm(root / "padded", student, hidden_size=64, num_layers=2, vocab_padding=28),
        "t5": build_t5(root / "t5", student, d_model=64, num_layers=2),
        "teacher_tokenizer": root / "teacher_tokenizer",
    }

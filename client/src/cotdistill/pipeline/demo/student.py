"""The demo's student: a smaller random-init Llama with a different (Metaspace BPE) tokenizer.

The teacher speaks byte-level BPE; the student's SentencePiece-style vocabulary forces the trainer
to align the teacher's top-k across tokenizers (Fu et al.), as with real teacher/student pairs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cotdistill.common import tasks
from cotdistill.pipeline.tiny_models import build_causal_lm, train_tokenizer

TOKENIZER_DATASETS = (
    "synthetic_arithmetic",
    "synthetic_arithmetic_4step",
    "synthetic_last_letters",
    "synthetic_last_letters_4",
    "synthetic_coin_flip",
    "synthetic_coin_flip_4",
)


def student_corpus(per_dataset: int = 400) -> list[str]:
    """Student-format (``ft_cot``) texts of every synthetic task, to train its tokenizer on."""
    texts = []
    for name in TOKENIZER_DATASETS:
        for example in tasks.load_dataset(name, "train", limit=per_dataset):
            prompt, completion = tasks.render_student_pair("ft_cot", example)
            texts.append(prompt + completion)
    return texts


def build_student(
    out: Path, *, hidden_size: int = 96, num_layers: int = 2, vocab_size: int = 360, seed: int = 0
) -> Path:
    """Write the untrained student (weights + tokenizer) to ``out`` (replaced if present)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    shutil.rmtree(out, ignore_errors=True)
    tokenizer = train_tokenizer(student_corpus(), "metaspace_bpe", vocab_size=vocab_size)
    return build_causal_lm(
        out,
        tokenizer,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=hidden_size // 32,
        max_positions=512,
        seed=seed,
    )


def parameter_count(model_dir: Path) -> int:
    """Parameters of a saved model (read from the safetensors header, no weights loaded)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            shape = f.get_slice(key).get_shape()
            count = 1
            for dim in shape:
                count *= dim
            total += count
    return total

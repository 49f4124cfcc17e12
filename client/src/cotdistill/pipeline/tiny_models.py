"""Tiny models and tokenizers built from config on the spot: no downloads, ever.

Used by tests, benchmarks and the embedded demo. Decoder-only students are Llama-style with
``head_dim=32`` (a size vLLM's CPU attention kernels accept); encoder-decoder students are T5.
Two tokenizer families with different vocabularies exist so cross-tokenizer alignment has
something real to align: byte-level BPE (GPT-2 style, ``Ġ`` marks spaces) and Metaspace BPE
(SentencePiece style, ``▁`` marks spaces).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # heavy imports only where a model is actually built
    from transformers import PreTrainedTokenizerFast

TokenizerKind = Literal["byte_bpe", "metaspace_bpe"]
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]

_NAMES = ["Tom", "Ana", "Lee", "Mia", "Sam", "Eva", "Ben", "Ivy"]
_ITEMS = ["apples", "pens", "coins", "books", "cards", "eggs"]


def reasoning_corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Short texts in the style of the synthetic tasks, to train tokenizers on."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        a, b = rng.randint(2, 30), rng.randint(1, 9)
        texts.append(
            f"{name} has {a} {item}. {name} buys {b} more. How many {item} does {name} have? ### "
            f"{name} starts with {a} {item}. {a} + {b} = {a + b}. --> {a + b} END"
        )
        words = rng.sample(_NAMES, 2)
        letters = "".join(w[-1] for w in words)
        texts.append(
            f'Take the last letters of the words in "{" ".join(words)}" and concatenate them. ### '
            f"The last letter of {words[0]} is {words[0][-1]}. The answer is {letters}. --> {letters} END"
        )
        texts.append("A coin is heads up. Sam flips the coin. Is the coin still heads up? ### --> no END")
    return texts


def train_tokenizer(
    texts: Iterable[str], kind: TokenizerKind = "byte_bpe", vocab_size: int = 360
) -> PreTrainedTokenizerFast:
    """Train a BPE tokenizer on ``texts`` and wrap it for transformers (and vLLM)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>" if kind == "metaspace_bpe" else None))
    if kind == "byte_bpe":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        vocab_size = max(vocab_size, len(alphabet) + len(SPECIAL_TOKENS) + 8)
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = []
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def build_causal_lm(
    out_dir: str | Path,
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int | None = None,
    max_positions: int = 512,
    vocab_padding: int = 0,
    seed: int = 0,
) -> Path:
    """Save a random-weight Llama-style causal LM with ``tokenizer`` to ``out_dir``.

    ``vocab_padding`` adds embedding rows beyond the tokenizer's vocabulary, as real families do
    (e.g. Qwen pads to a multiple of 128), to test vocabulary-size mismatches.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    head_dim = 32  # vLLM's CPU kernels accept 32, 64, 80, ...; hidden/heads need not match it
    config = LlamaConfig(
        vocab_size=len(tokenizer) + vocab_padding,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        head_dim=head_dim,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def build_t5(
    out_dir: str | Path,
    tokenizer: PreTrainedTokenizerFast,
    *,
    d_model: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    seed: int = 0,
) -> Path:
    """Save a random-weight T5 encoder-decoder with ``tokenizer`` to ``out_dir``."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=32,
        d_ff=2 * d_model,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=num_heads,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,  # type: ignore[call-arg]  # T5Config takes **kwargs
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_pair(root: str | Path, texts: Sequence[str] | None = None) -> dict[str, Path]:
    """A teacher and a student with *different* tokenizers, plus a T5 student, under ``root``."""
    corpus = list(texts) if texts is not None else reasoning_corpus()
    root = Path(root)
    teacher_tok = train_tokenizer(corpus, "byte_bpe", 360)
    student_tok = train_tokenizer(corpus, "metaspace_bpe", 200)
    return {
        "teacher": build_causal_lm(root / "teacher", teacher_tok, hidden_size=64, seed=1),
        "student": build_causal_lm(root / "student", student_tok, hidden_size=64, seed=2),
        "t5": build_t5(root / "t5", student_tok, seed=3),
    }

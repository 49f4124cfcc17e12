"""Describe a Hugging Face tokenizer: sizes, special tokens and a content hash.

The hash (``cotdistill.common.lm.tokenizer_content_hash``) covers what decides tokenization, not
the file layout, so two copies of one tokenizer hash equal and a student with another tokenizer
is recognized as different; the trainer compares its tokenizers with the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cotdistill.common.chat import chat_template, render_chat
from cotdistill.common.lm import tokenizer_content_hash
from cotdistill.teacher.engine import TokenizerDescription

__all__ = ["describe_tokenizer", "encode_texts", "render_chat"]


def describe_tokenizer(tokenizer: Any, name: str, model_vocab_size: int) -> TokenizerDescription:
    """TokenizerInfo fields; ``model_vocab_size`` is the embedding rows (may exceed len(tokenizer))."""
    return TokenizerDescription(
        name=name,
        vocab_size=int(model_vocab_size),
        tokenizer_vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        content_hash=tokenizer_content_hash(tokenizer),
        chat_template=chat_template(tokenizer),
    )


def encode_texts(tokenizer: Any, texts: Sequence[str], *, special_tokens: bool = True) -> list[list[int]]:
    """Token ids of each text with a Hugging Face tokenizer (the local engines share this)."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=special_tokens)["input_ids"]]

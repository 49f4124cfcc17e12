"""Describe a Hugging Face tokenizer: sizes, special tokens and a content hash.

The hash covers what decides tokenization (the model's vocabulary and merges, added tokens,
normalizer and pre-tokenizer), not the file layout, so two copies of one tokenizer hash equal and
a student with another tokenizer is recognized as different.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cotdistill.teacher.engine import TokenizerDescription


def tokenizer_content_hash(tokenizer: Any) -> str:
    """Hex SHA-256 of the tokenization-relevant parts of a fast tokenizer's JSON."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        relevant = {k: spec.get(k) for k in ("model", "added_tokens", "normalizer", "pre_tokenizer")}
        payload = json.dumps(relevant, sort_keys=True, ensure_ascii=False)
    else:  # a slow tokenizer: its vocabulary is all we can see
        payload = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


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


def chat_template(tokenizer: Any) -> str:
    """The tokenizer's default chat template, or an empty string."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates
        template = template.get("default")
    return template if isinstance(template, str) else ""


def render_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]], assistant_prefix: str) -> str | None:
    """``messages`` through the tokenizer's chat template (None without one); see Engine.render_chat."""
    if tokenizer is None or not chat_template(tokenizer):
        return None
    turns = [dict(m) for m in messages]
    if not assistant_prefix:
        return str(tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True))
    turns.append({"role": "assistant", "content": assistant_prefix})
    text = str(tokenizer.apply_chat_template(turns, tokenize=False, continue_final_message=True))
    # continue_final_message cuts after the stripped prefix; keep its trailing whitespace (Fu et
    # al.'s trigger ends in a newline that the rationale follows).
    stripped = assistant_prefix.rstrip()
    if text.endswith(stripped) and not text.endswith(assistant_prefix):
        text += assistant_prefix[len(stripped) :]
    return text


def encode_texts(tokenizer: Any, texts: Sequence[str], *, special_tokens: bool = True) -> list[list[int]]:
    """Token ids of each text with a Hugging Face tokenizer (the local engines share this)."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=special_tokens)["input_ids"]]

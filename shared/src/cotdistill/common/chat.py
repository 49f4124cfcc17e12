"""Prompts through a Hugging Face tokenizer's chat template, one way for every service.

The teacher renders chat prompts with it, the evaluator renders ``chat_*`` formats with it, so a
conversation becomes the same text wherever it is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


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

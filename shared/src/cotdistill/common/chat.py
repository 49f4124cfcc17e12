"""Prompts through a Hugging Face tokenizer's chat template, one way for every service.

The teacher renders chat prompts with it, the evaluator renders ``chat_*`` formats with it, so a
conversation becomes the same text wherever it is sent.
"""

from __future__ import annotations

import functools
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


_PROBE = "\x00cotdistill-probe\x00"


@functools.lru_cache(maxsize=16)
def user_turn_markers(template: str) -> tuple[str, str] | None:
    """(opener, closer): the text a chat template puts right before and after a user turn's content.

    Learned by rendering probe conversations (a lone user turn, one after a system turn, one after
    an exchange) and keeping what every rendering has in common around the probe, so a default
    system prompt or an earlier turn never ends up in a marker. None when the template does not
    render (not a chat template, or one that needs variables we do not pass).
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    probes = [
        [{"role": "user", "content": _PROBE}],
        [{"role": "system", "content": "s"}, {"role": "user", "content": _PROBE}],
        [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": _PROBE}],
    ]
    befores: list[str] = []
    afters: list[str] = []
    for conversation in probes:
        try:
            out: Any = render_jinja_template(
                [conversation], chat_template=template, add_generation_prompt=True, bos_token="", eos_token=""
            )
        except Exception:  # templates may refuse a shape (e.g. no system role): use the others
            continue
        # (rendered texts, generation indices); one conversation in, one text out.
        text = str(out[0][0])
        if text.count(_PROBE) != 1:
            continue
        before, _, after = text.partition(_PROBE)
        befores.append(before)
        afters.append(after)
    if not befores:
        return None
    opener = _common_suffix(befores)
    closer = _common_prefix(afters)
    return (opener, closer) if opener and closer else None


def last_user_message(prompt: str, template: str) -> str | None:
    """The content of the last user turn of ``prompt``, a conversation rendered with ``template``.

    None when the template's markers cannot be learned or do not occur in ``prompt``. Templates
    that trim contents (Gemma's) make this the trimmed text, as the model saw it.
    """
    markers = user_turn_markers(template) if template else None
    if markers is None:
        return None
    opener, closer = markers
    start = prompt.rfind(opener)
    if start < 0:
        return None
    start += len(opener)
    end = prompt.find(closer, start)
    return prompt[start:end] if end >= 0 else None


def _common_suffix(texts: Sequence[str]) -> str:
    reversed_prefix = _common_prefix([t[::-1] for t in texts])
    return reversed_prefix[::-1]


def _common_prefix(texts: Sequence[str]) -> str:
    first = texts[0]
    n = len(first)
    for t in texts[1:]:
        n = min(n, len(t))
        for i in range(n):
            if t[i] != first[i]:
                n = i
                break
    return first[:n]

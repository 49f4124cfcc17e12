"""The token-level facts of a model every service must agree on, without torch.

Where a generation ends (the EOS set), what pads a batch, how long the context is, how a stop
string cuts the text, how generated ids become text, and which tokenizer it was (a content hash).
The teacher, the model server, the evaluator and the trainer all take them from here: when the
evaluator ended a completion on one EOS id while the server ended it on another, it scored text
the server never serves.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# Prompt tokens decoded in front of a completion so its first token keeps its leading space
# (a SentencePiece/Metaspace decoder drops it at the start of a text).
CONTEXT_TOKENS = 4

# The context length of a decoder-only config without ``max_position_embeddings``, and of an
# encoder-decoder (T5 has relative positions; it was trained at 512).
DEFAULT_CONTEXT = 2048
DEFAULT_SEQ2SEQ_CONTEXT = 512

_PROBE = "\x00cotdistill-eot-probe\x00"


def _ids(value: Any) -> set[int]:
    if isinstance(value, bool) or value is None:
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, (list, tuple, set, frozenset)):
        return {int(v) for v in value if isinstance(v, int) and not isinstance(v, bool)}
    return set()


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """Special tokens the chat template writes right after an assistant turn (``<|im_end|>``,
    ``<end_of_turn>``, ``<|eot_id|>``): an instruct model ends its answer with them, so they end a
    generation as EOS does. Learned by rendering a probe conversation; empty without a template,
    when the template does not render, or when what follows the turn is ordinary text.
    """
    from cotdistill.common.chat import chat_template

    if tokenizer is None or not chat_template(tokenizer):
        return set()
    turns = [{"role": "user", "content": "u"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = str(tokenizer.apply_chat_template(turns, tokenize=False))
    except Exception:  # a template that refuses the shape (or needs variables we do not pass)
        return set()
    if text.count(_PROBE) != 1:
        return set()
    after = text.partition(_PROBE)[2].lstrip(" ")
    if not after:
        return set()
    ids = list(tokenizer(after, add_special_tokens=False)["input_ids"])
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    special.update(int(i) for i, tok in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items() if tok.special)
    return {ids[0]} if ids and ids[0] in special else set()


def eos_ids(tokenizer: Any, config: Any = None, generation_config: Any = None) -> frozenset[int]:
    """Every token id that ends a generation: the generation config's (an id or a list), the model
    config's, the tokenizer's, and the chat template's end-of-turn token (:func:`end_of_turn_ids`).
    """
    found: set[int] = set()
    for source in (generation_config, config):
        if source is not None:
            found |= _ids(getattr(source, "eos_token_id", None))
    if tokenizer is not None:
        found |= _ids(getattr(tokenizer, "eos_token_id", None))
        found |= end_of_turn_ids(tokenizer)
    return frozenset(found)


def pad_id(tokenizer: Any, eos: Iterable[int] = ()) -> int:
    """The id a batch is padded with: the tokenizer's pad token, else its EOS token, else the
    smallest id of the EOS set, else 0. Padding is masked out, so any id works; one rule keeps
    every batch (and every test comparing batches) the same."""
    for value in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    eos = sorted(eos)
    return eos[0] if eos else 0


def ensure_pad_token(tokenizer: Any) -> None:
    """Give a tokenizer without a pad token its EOS token as one (the rule of :func:`pad_id`),
    for code that pads through the tokenizer itself and for checkpoints saved with it."""
    if getattr(tokenizer, "pad_token_id", None) is None and getattr(tokenizer, "eos_token", None) is not None:
        tokenizer.pad_token = tokenizer.eos_token


def context_length(config: Any, cap: int = 0) -> int:
    """Tokens of prompt + completion a model takes: ``max_position_embeddings`` (of the text
    config for multimodal configs) or :data:`DEFAULT_CONTEXT`; an encoder-decoder's ``n_positions``
    or :data:`DEFAULT_SEQ2SEQ_CONTEXT`. ``cap`` > 0 lowers it (a service setting)."""
    if getattr(config, "is_encoder_decoder", False):
        length = int(getattr(config, "n_positions", 0) or 0) or DEFAULT_SEQ2SEQ_CONTEXT
    else:
        text = getattr(config, "text_config", None) or config
        length = int(getattr(text, "max_position_embeddings", 0) or 0) or DEFAULT_CONTEXT
    return min(length, cap) if cap > 0 else length


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any non-empty stop string, as vLLM
    and the model server cut it (the server's streaming detokenizer ends at the same place)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return text[:cut] if cut >= 0 else text


def decode_text(tokenizer: Any, ids: Sequence[int]) -> str:
    """Token ids -> text as served: special tokens skipped, no clean-up of spaces (as vLLM: the
    text is exactly the tokens' pieces joined)."""
    return str(tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))


def continuation(
    decode: Callable[[list[int]], str], context: Sequence[int], ids: Sequence[int], base: str | None = None
) -> str:
    """The text of ``ids`` decoded after ``context`` (``base``: ``decode(context)`` when known):
    decode(context + ids) minus decode(context), or decode(ids) where the context does not
    decode as a prefix. Where the context ends mid-word the completion keeps its leading space."""
    if not context:
        return decode(list(ids))
    base = decode(list(context)) if base is None else base
    full = decode(list(context) + list(ids))
    return full[len(base) :] if full.startswith(base) else decode(list(ids))


def completion_text(tokenizer: Any, prompt_ids: Sequence[int], ids: Sequence[int], *, context: bool = True) -> str:
    """The text of completion ``ids`` after ``prompt_ids``, decoded as the model server streams
    it: decoder-only models (``context``) continue the prompt's text, so its last
    :data:`CONTEXT_TOKENS` tokens are decoded in front and removed again (:func:`continuation`)."""
    ctx = list(prompt_ids[-CONTEXT_TOKENS:]) if context else []
    return continuation(lambda part: decode_text(tokenizer, part), ctx, ids)


def choice_seed(seed: int | None, index: int) -> int | None:
    """The seed of choice ``index`` of a request seeded with ``seed`` (OpenAI ``n`` > 1): each
    choice differs, the request stays reproducible. The model server and the evaluator use it, so
    a seeded evaluation samples what the server would."""
    return None if seed is None else (seed + index) % (2**63)


def tokenizer_content_hash(tokenizer: Any) -> str:
    """Hex SHA-256 of what decides tokenization (model vocab/merges, added tokens, normalizer,
    pre-tokenizer), not the file layout: two copies of one tokenizer hash equal, another tokenizer
    differs. The teacher reports it (``TokenizerInfo.content_hash``), sample shards record it, the
    trainer compares its tokenizers with it. Cached per tokenizer object: Gemma's 33 MB tokenizer
    JSON takes seconds to canonicalize.
    """
    try:
        return _HASHES[tokenizer]
    except (KeyError, TypeError):
        pass
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        relevant = {k: spec.get(k) for k in ("model", "added_tokens", "normalizer", "pre_tokenizer")}
        payload = json.dumps(relevant, sort_keys=True, ensure_ascii=False)
    else:  # a slow tokenizer: its vocabulary is all there is to see
        payload = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    digest = hashlib.sha256(payload.encode()).hexdigest()
    with contextlib.suppress(TypeError):  # not weak-referenceable: just not cached
        _HASHES[tokenizer] = digest
    return digest


_HASHES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

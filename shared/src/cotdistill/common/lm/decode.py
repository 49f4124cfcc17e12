"""Complete a static batch of prompts the way the model server serves each of them.

For callers without a scheduler of their own (the evaluator's checkpoint backend, the trainer's
on-policy rollouts): one left-padded
prefill, then one forward pass per step with the KV cache, each step through
:func:`~cotdistill.common.lm.sampling.sample_next`; a row ends on any id of the EOS set, on a stop
string in its text (decoded as the server streams it) or at ``max_tokens`` / the context length.
With the seeds the server gives a request's choices (:func:`~cotdistill.common.lm.tokens.choice_seed`)
a seeded row draws the server's tokens; greedy rows equal the server's whatever the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cotdistill.common.lm.detokenize import IncrementalText
from cotdistill.common.lm.loading import LoadedLM
from cotdistill.common.lm.sampling import left_pad, right_pad, sample_next, seeded_generator
from cotdistill.common.lm.tokens import completion_text, decode_text


@dataclass(frozen=True)
class Decoded:
    """One completion: generated ids (the ending EOS included, as the server streams it), the
    text (cut before the earliest stop string) and why it ended."""

    token_ids: list[int]
    text: str
    finish_reason: Literal["stop", "length"]
    support: Any = None  # with ``support_k``: [len(token_ids), k] ids of the k most likely tokens (raw logits)


def generate(
    lm: LoadedLM,
    prompts: Sequence[Sequence[int]],
    *,
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
    seeds: Sequence[int | None] | None = None,
    support_k: int = 0,
) -> list[Decoded]:
    """One :class:`Decoded` per prompt (token ids).

    ``seeds``: one per prompt (None: the global RNG); ignored under greedy decoding
    (``temperature`` 0). ``stop``: strings that end a row (never part of its text).
    ``support_k`` > 0 also returns, for every generated token, the ids of the ``support_k`` most
    likely tokens at its position (an on-policy student's own support). Call under
    ``torch.inference_mode`` or ``no_grad``.
    """
    import torch

    tokenizer = lm.tokenizer

    def decode(ids: list[int]) -> str:
        return decode_text(tokenizer, ids)

    if not prompts:
        return []
    if any(not p for p in prompts):
        raise ValueError("a prompt is empty after tokenization")
    model = lm.model
    device = next(model.parameters()).device
    rows = len(prompts)
    seeds = list(seeds) if seeds is not None else [None] * rows
    generators = [seeded_generator(s, device) if s is not None and temperature > 0 else None for s in seeds]
    temps = torch.full((rows,), float(temperature), device=device)
    top_ps = torch.full((rows,), float(top_p), device=device)
    # The server's rule for both kinds: prompt + completion within the context length.
    limits = [max(1, min(max_tokens, lm.context_length - len(p))) for p in prompts]
    step = _Seq2SeqSteps(lm, prompts, device) if lm.encoder_decoder else _CausalSteps(lm, prompts, device)
    generated: list[list[int]] = [[] for _ in prompts]
    finish: list[Literal["stop", "length"] | None] = [None] * rows
    # The server's detokenizer ends a row on a stop string at the same token and cuts it the same way.
    texts = [IncrementalText(decode, p if not lm.encoder_decoder else [], stop) for p in prompts] if stop else None
    supports: list[Any] = []
    logits = step.first()
    for _ in range(max(limits)):
        logits = logits.float()
        if support_k:
            supports.append(logits.topk(support_k, dim=-1).indices)
        tokens, _scaled = sample_next(logits, temps, top_ps, generators)
        for row, token in enumerate(tokens.tolist()):
            if finish[row] is not None:
                continue
            generated[row].append(token)
            if token in lm.eos_ids or (texts is not None and texts[row].add(token)[1]):
                finish[row] = "stop"
            elif len(generated[row]) >= limits[row]:
                finish[row] = "length"
        if all(f is not None for f in finish):
            break
        logits = step.next(tokens)
    support = torch.stack(supports, dim=1) if supports else None  # [B, steps, k]
    out = []
    for row, (p, ids, reason) in enumerate(zip(prompts, generated, finish, strict=True)):
        if texts is not None:
            texts[row].flush()  # nothing after a stop string; the held-back rest otherwise
            text = texts[row].text
        else:  # the EOS that ended the row is not text (the server never adds it)
            body = ids[:-1] if ids and ids[-1] in lm.eos_ids and reason == "stop" else ids
            text = completion_text(lm.tokenizer, p, body, context=not lm.encoder_decoder)
        out.append(Decoded(ids, text, reason or "length", support[row, : len(ids)] if support is not None else None))
    return out


class _Steps:
    """One forward pass per step through the KV cache; the next-token logits [B, V]."""

    model: Any
    cache: Any

    def _forward(self, **inputs: Any) -> Any:
        out = self.model(**inputs, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[:, -1, :]


class _CausalSteps(_Steps):
    """Decoder-only: left-padded prefill, then one token per row per step."""

    def __init__(self, lm: LoadedLM, prompts: Sequence[Sequence[int]], device: Any) -> None:
        from transformers import DynamicCache

        ids, mask, positions = left_pad(prompts, lm.pad_id)
        self.model = lm.model
        self.ids, self.mask, self.positions = ids.to(device), mask.to(device), positions.to(device)
        self.cache = DynamicCache(config=lm.model.config)

    def first(self) -> Any:
        return self._forward(
            input_ids=self.ids, attention_mask=self.mask, position_ids=self.positions, logits_to_keep=1
        )

    def next(self, tokens: Any) -> Any:
        import torch

        self.positions = self.positions[:, -1:] + 1
        self.mask = torch.cat([self.mask, torch.ones_like(tokens[:, None])], dim=1)
        return self._forward(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.positions)


class _Seq2SeqSteps(_Steps):
    """Encoder-decoder: the prompts encoded once (right padding), the decoder from its start id."""

    def __init__(self, lm: LoadedLM, prompts: Sequence[Sequence[int]], device: Any) -> None:
        from transformers import DynamicCache, EncoderDecoderCache

        ids, mask = right_pad(prompts, lm.pad_id)
        self.model = lm.model
        self.mask = mask.to(device)
        self.encoded = lm.model.get_encoder()(input_ids=ids.to(device), attention_mask=self.mask)
        self.start = int(getattr(lm.model.config, "decoder_start_token_id", 0) or 0)
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())

    def first(self) -> Any:
        import torch

        start = torch.full((self.mask.shape[0], 1), self.start, dtype=torch.long, device=self.mask.device)
        return self.next(start[:, 0])

    def next(self, tokens: Any) -> Any:
        return self._forward(encoder_outputs=self.encoded, attention_mask=self.mask, decoder_input_ids=tokens[:, None])

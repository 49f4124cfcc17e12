"""The narrow async engine interface every backend implements (after vLLM's ``EngineClient``).

The HTTP layer only ever calls :meth:`Engine.generate` (an async iterator of per-step deltas),
:meth:`Engine.score` (prompt logprobs), ``tokenize`` and :meth:`Engine.close`; cancelling the
iterator aborts the request. Token strings come from the tokenizer (``token_strings``).
That keeps the transformers and vLLM backends interchangeable and lets unit tests fake an engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.samples import MAX_TOP_K

FinishReason = Literal["stop", "length"]

# Top-k logprobs per token an engine returns at most: the project's one cap (OpenAI chat allows
# 20, vLLM too). Named after the OpenAI request fields it bounds (``logprobs``, ``top_logprobs``).
MAX_TOP_LOGPROBS: Final = MAX_TOP_K


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one completion.

    Attributes:
        max_tokens: tokens to generate at most, >= 1.
        temperature: 0 means greedy; otherwise logits are divided by it; range [0, 2].
        top_p: nucleus sampling mass in (0, 1]; 1 keeps the whole distribution.
        stop: strings that end the completion; the stop string is not part of the text.
        seed: per-request RNG seed; the same seed and prompt give the same completion.
        logprobs: None for no logprobs; k >= 0 returns the sampled token's logprob and the top k
            candidates (raw: before temperature and top_p, as vLLM's default ``raw_logprobs``).
        adapter: the LoRA adapter to generate with (its served name), None for the base model.
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None
    adapter: str | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InvalidArgument("max_tokens", f"must be >= 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidArgument("temperature", f"must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidArgument("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidArgument("logprobs", f"must be in [0, {MAX_TOP_LOGPROBS}], got {self.logprobs}")
        if any(not s for s in self.stop):
            raise InvalidArgument("stop", "stop strings must not be empty")


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its id and raw logprob, plus the top-k candidates (ids, logprobs)."""

    token_id: int
    logprob: float
    top_ids: tuple[int, ...] = ()
    top_logprobs: tuple[float, ...] = ()


@dataclass
class StepOutput:
    """What one engine step added to one completion.

    ``text`` is the new text (stop strings removed, held back while it may still become one);
    ``token_ids`` the new tokens (text and tokens may lag each other by a step);
    ``finish_reason`` is set on the last output only.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None


@dataclass(frozen=True)
class EngineStats:
    """Requests inside the engine now: in the running batch, and submitted but not started."""

    running: int
    waiting: int


class EngineClosed(RuntimeError):
    """The engine was closed while the request waited or ran."""


class EngineLoadError(Exception):
    """A checkpoint could not be loaded (missing, corrupt, unsupported); the message says why."""


@runtime_checkable
class Engine(Protocol):
    """A loaded model that generates completions; safe to call from many tasks at once."""

    backend: str
    model_path: str
    max_model_len: int
    vocab_size: int
    eos_token_id: int | None
    tokenizer: Any  # the Hugging Face tokenizer (chat template, decoding)

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Prompt text -> token ids (by default with the special tokens the model was trained with)."""
        ...

    def generate(self, prompt_ids: Sequence[int], params: SamplingParams, request_id: str) -> AsyncIterator[StepOutput]:
        """Stream the completion of ``prompt_ids``; closing or cancelling the iterator aborts it."""
        ...

    async def score(
        self, prompts: Sequence[Sequence[int]], top_k_logprobs: int, adapter: str | None = None
    ) -> list[list[TokenLogprob]]:
        """Prompt logprobs (teacher forcing), all prompts in one batch where the backend can
        (``adapter``: a LoRA adapter's served name, on backends that serve adapters).

        For each prompt of length L: L - 1 entries, entry t - 1 is token t's raw logprob given
        tokens [0, t) with the ``top_k_logprobs`` most likely candidates at that position
        (0 <= top_k_logprobs <= MAX_TOP_LOGPROBS).
        """
        ...

    def stats(self) -> EngineStats: ...

    async def close(self) -> None:
        """Stop the engine and free its memory; in-flight requests fail."""
        ...

"""The narrow async engine interface every teacher backend implements.

The servicer only talks to :class:`Engine`: ``start`` (load the model), ``info``, ``encode``,
``generate`` (an async iterator of finished samples), ``score`` (teacher forcing), ``abort``,
``check_health`` and ``close``. Backends: vLLM ``AsyncLLM``, transformers (batched sampling with a
KV cache) and an OpenAI-compatible HTTP server. Results carry top-k candidates as flat row-major
lists, built from whole tensors, so the servicer copies them into packed proto fields as they are.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

LogprobMode = Literal["raw", "processed"]
FinishReason = Literal["stop", "length", "abort"]
Backend = Literal["vllm", "transformers", "openai"]

# A row shorter than k (vocabulary smaller than k) is padded with these, as the wire format says.
PAD_ID = -1
PAD_LOGPROB = -math.inf


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    """Validated sampling parameters of one request (see ``cotdistill.v1.SamplingParams``).

    Attributes:
        n: samples per prompt, >= 1.
        temperature: >= 0; 0 is greedy decoding.
        top_p: nucleus mass in (0, 1]; 1 is off.
        max_tokens: generated tokens per sample, >= 1.
        stop: strings that end a sample; excluded from its text.
        seed: makes sampling reproducible where the engine allows; None is nondeterministic.
        top_k_logprobs: candidates per generated token, 0-20.
        logprob_mode: "raw" (log_softmax of the logits) or "processed" (after temperature).
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    top_k_logprobs: int = 0
    logprob_mode: LogprobMode = "raw"


@dataclass(slots=True)
class GenerateRequest:
    """One engine call: several prompts sharing one set of options.

    ``prompt_ids[i]`` is prompt i tokenized with the engine's tokenizer (from :meth:`Engine.encode`);
    it may be None for backends that tokenize remotely (the OpenAI backend without a tokenizer).
    ``on_first_token`` is called once, from any thread, when the first token of any sample exists.
    """

    request_id: str
    prompts: Sequence[str]
    prompt_ids: Sequence[Sequence[int] | None]
    options: SamplingOptions
    on_first_token: Callable[[], None] | None = None


@dataclass(slots=True)
class TokenScores:
    """Per-token logprobs of one sequence as flat columns (the shape of ``cotdistill.v1.TokenLogprobs``).

    With T = len(token_ids): ``token_logprobs`` has T entries; ``top_ids`` and ``top_logprobs`` have
    T*k entries, row-major, each row sorted by logprob (highest first) and padded with
    ``PAD_ID``/``PAD_LOGPROB`` only where the vocabulary has fewer than k tokens.
    """

    token_ids: list[int]
    token_logprobs: list[float]
    k: int
    top_ids: list[int]
    top_logprobs: list[float]
    mode: LogprobMode = "raw"

    def __post_init__(self) -> None:
        t = len(self.token_ids)
        if self.token_logprobs and len(self.token_logprobs) != t:
            raise ValueError(f"token_logprobs has {len(self.token_logprobs)} entries for {t} tokens")
        if len(self.top_ids) != t * self.k or len(self.top_logprobs) != t * self.k:
            raise ValueError(f"top-k columns must hold T*k = {t}*{self.k} entries")


@dataclass(slots=True)
class Completion:
    """One finished sample: ``prompt_index`` and ``sample_index`` locate it in the request."""

    prompt_index: int
    sample_index: int
    text: str
    scores: TokenScores
    finish_reason: FinishReason
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class ScoreInput:
    """A (prompt, completion) pair for teacher forcing; ids are the engine's tokenization.

    ``candidate_ids`` (T*m row-major, T = len(completion_ids), m = ``candidates_per_token``,
    -1 pads a row) asks for the logprobs of those ids at each completion position as well:
    e.g. a student's own top candidates, for a reverse KL on the student's support. Only engines
    whose info says ``scores_candidates`` accept them.
    """

    prompt: str
    completion: str
    prompt_ids: Sequence[int] | None = None
    completion_ids: Sequence[int] | None = None
    candidate_ids: Sequence[int] = ()
    candidates_per_token: int = 0


@dataclass(frozen=True, slots=True)
class ScoreOutput:
    """Teacher-forced logprobs of one completion (always raw) and the prompt's token count.

    ``candidate_logprobs``: T*m logprobs of the input's ``candidate_ids`` (``-inf`` where the id
    is -1); empty without candidates.
    """

    scores: TokenScores
    prompt_tokens: int
    candidate_logprobs: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TokenizerDescription:
    """What ``cotdistill.v1.TokenizerInfo`` reports."""

    name: str
    vocab_size: int
    tokenizer_vocab_size: int
    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None
    content_hash: str
    chat_template: str = ""


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """The model and limits of a started engine."""

    model_id: str
    backend: Backend
    tokenizer: TokenizerDescription | None
    context_length: int
    max_top_k: int
    logprob_modes: tuple[LogprobMode, ...] = ("raw", "processed")
    supports_score: bool = True
    scores_candidates: bool = False  # Score accepts candidate_ids (ScoreInput)
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """An async teacher engine. Methods other than ``start`` may be called only after it returned."""

    backend: Backend

    async def start(self) -> None:
        """Load the model (may take minutes on real weights); raise on failure."""
        ...

    def info(self) -> EngineInfo:
        """Model, tokenizer and limits."""
        ...

    def encode(self, texts: Sequence[str], *, special_tokens: bool = True) -> list[list[int]] | None:
        """Tokenize texts as the engine will; None when the engine cannot tokenize locally.

        ``special_tokens=False`` tokenizes a continuation (a completion that follows a prompt).
        """
        ...

    def render_chat(self, messages: Sequence[Mapping[str, str]], assistant_prefix: str) -> str | None:
        """A conversation as prompt text through the model's chat template; None without one.

        A non-empty ``assistant_prefix`` opens the assistant turn and the text ends inside it.
        """
        ...

    def generate(self, request: GenerateRequest) -> AsyncIterator[Completion]:
        """Yield each of the request's len(prompts)*n samples as it finishes (any order).

        Closing the iterator early (client cancelled) must be followed by :meth:`abort`.
        """
        ...

    async def score(self, items: Sequence[ScoreInput], top_k_logprobs: int) -> list[ScoreOutput]:
        """Teacher forcing: raw logprobs and top-k of each completion token, in item order."""
        ...

    async def abort(self, request_id: str) -> None:
        """Stop generating for ``request_id`` and free its resources; unknown ids are ignored."""
        ...

    async def check_health(self) -> None:
        """Raise when the engine cannot serve (e.g. its worker died)."""
        ...

    def queue_depth(self) -> int:
        """Work accepted but not yet started by the engine (samples or requests, engine-specific)."""
        ...

    async def close(self) -> None:
        """Release the model and worker threads/processes."""
        ...

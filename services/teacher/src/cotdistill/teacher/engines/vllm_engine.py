"""vLLM backend: ``AsyncLLM`` (the production path on GPUs; its CPU build runs the tests here).

Each (prompt, sample) is one vLLM request with ``n=1`` and ``DELTA`` outputs: samples finish and
stream independently, a seeded request derives one seed per sample (as the transformers backend
does, so a sample does not depend on its neighbours), and prefix caching shares the prompt's KV
cache among the samples of a prompt. Logprobs come as ``FlatLogprobs`` (few Python objects) and
are normalized to exactly k candidates per token (see :mod:`.topk`).

vLLM chooses raw or processed logprobs per engine (``logprobs_mode``), not per request: the
replica serves the mode of ``COTDISTILL_TEACHER_VLLM_LOGPROB_MODE`` and rejects the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cotdistill.common.lm.loading import load_tokenizer
from cotdistill.common.models import resolve_model
from cotdistill.teacher.engine import (
    Backend,
    Completion,
    EngineInfo,
    FinishReason,
    GenerateRequest,
    ScoreInput,
    ScoreOutput,
    TokenScores,
)
from cotdistill.teacher.engines.topk import CandidateColumns, normalize
from cotdistill.teacher.engines.transformers_engine import row_seed
from cotdistill.teacher.tokenizer_info import describe_tokenizer, encode_texts, render_chat

if TYPE_CHECKING:
    from cotdistill.teacher.settings import TeacherSettings

log = logging.getLogger(__name__)

_VLLM_MODE = {"raw": "raw_logprobs", "processed": "processed_logprobs"}
_FINISH: dict[str | None, FinishReason] = {"stop": "stop", "length": "length", "abort": "abort", None: "abort"}


@dataclass
class _Sample:
    """A vLLM request's output, accumulated from its deltas."""

    text_parts: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    columns: CandidateColumns = field(default_factory=CandidateColumns)
    finish_reason: str | None = None


class VllmEngine:
    """``vllm.v1.engine.async_llm.AsyncLLM`` behind the teacher engine interface.

    Args:
        model_path: local model directory (vLLM loads the weights, we load its tokenizer too).
        engine_kwargs: extra ``AsyncEngineArgs`` (dtype, max_model_len, tensor_parallel_size, ...).
        logprob_mode: "raw" or "processed", the engine-wide vLLM ``logprobs_mode``.
        max_top_k: the largest k requests may ask for (vLLM's ``max_logprobs`` is set to k+1).
    """

    backend: Backend = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        engine_kwargs: dict[str, Any] | None = None,
        logprob_mode: str = "raw",
        max_top_k: int = 20,
    ) -> None:
        self.model_path = model_path
        self.engine_kwargs = dict(engine_kwargs or {})
        self.logprob_mode = logprob_mode
        self.max_top_k = max_top_k
        self._engine: Any = None
        self._info: EngineInfo | None = None
        self.tokenizer: Any = None
        self._requests: dict[str, set[str]] = {}  # our request id -> vLLM request ids in flight
        self._waiting = 0  # vLLM requests without a first token yet
        self._seq = 0

    @classmethod
    def from_settings(cls, settings: TeacherSettings) -> VllmEngine:
        kwargs: dict[str, Any] = {
            "tensor_parallel_size": settings.tensor_parallel_size,
            "gpu_memory_utilization": settings.gpu_memory_utilization,
            "enforce_eager": settings.enforce_eager,
            "max_num_seqs": settings.max_num_seqs,
            "seed": settings.seed,
            "dtype": settings.dtype,
        }
        if settings.tensor_parallel_size == 1:
            # One GPU worker runs inside the engine-core process (one process and one vLLM import
            # less per replica); vLLM's CPU platform switches this back to "mp" itself.
            kwargs["distributed_executor_backend"] = "uni"
        if settings.max_model_len:
            kwargs["max_model_len"] = settings.max_model_len
        if settings.tokenizer:
            kwargs["tokenizer"] = settings.tokenizer
        return cls(
            settings.model, engine_kwargs=kwargs, logprob_mode=settings.vllm_logprob_mode, max_top_k=settings.max_top_k
        )

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs = dict(self.engine_kwargs)
        if not _cuda_available():
            # vLLM's CPU build crashes the engine (``CPU Generator does not use offset``) when a
            # seeded request's prefill is split across steps; without chunked prefill it never is.
            kwargs.setdefault("enable_chunked_prefill", False)
        # A registry name materializes into the models cache; model_id keeps the name as given.
        where = await asyncio.to_thread(resolve_model, self.model_path)
        args = AsyncEngineArgs(
            model=str(where),
            logprobs_mode=_VLLM_MODE[self.logprob_mode],  # type: ignore[arg-type]
            max_logprobs=self.max_top_k + 1,
            disable_log_stats=True,
            **kwargs,
        )
        # Construction spawns the engine-core process and loads the weights: keep the loop free.
        self._engine = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
        tokenizer_path = self.engine_kwargs.get("tokenizer", str(where))
        self.tokenizer = await asyncio.to_thread(load_tokenizer, tokenizer_path)
        model_config = self._engine.model_config
        vocab = int(model_config.get_vocab_size())
        runner_v2 = bool(getattr(self._engine.vllm_config, "use_v2_model_runner", False))
        self._info = EngineInfo(
            model_id=self.model_path,
            backend="vllm",
            tokenizer=describe_tokenizer(self.tokenizer, tokenizer_path, vocab),
            context_length=int(model_config.max_model_len),
            max_top_k=self.max_top_k,
            logprob_modes=(self.logprob_mode,),  # type: ignore[arg-type]
            # prompt_logprob_token_ids (scoring given ids) exists only in vLLM's Model Runner V2,
            # which needs Triton: on GPUs yes, on the CPU build here no.
            scores_candidates=runner_v2,
            extra={"dtype": str(model_config.dtype), "model_runner": "v2" if runner_v2 else "v1"},
        )
        log.info("vLLM engine loaded %s (context %d)", self.model_path, self._info.context_length)

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await asyncio.to_thread(engine.shutdown)

    def info(self) -> EngineInfo:
        if self._info is None:
            raise RuntimeError("engine not started")
        return self._info

    async def check_health(self) -> None:
        if self._engine is None:
            raise RuntimeError("engine not started")
        await self._engine.check_health()

    def queue_depth(self) -> int:
        """vLLM requests (one per sample) submitted and still without a first token."""
        return self._waiting

    def active_requests(self) -> int:
        return len(self._requests)

    def render_chat(self, messages: Sequence[Mapping[str, str]], assistant_prefix: str) -> str | None:
        return render_chat(self.tokenizer, messages, assistant_prefix)

    def encode(self, texts: Sequence[str], *, special_tokens: bool = True) -> list[list[int]]:
        return encode_texts(self.tokenizer, texts, special_tokens=special_tokens)

    # ---- generate --------------------------------------------------------------------------

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Completion]:
        from vllm import SamplingParams, TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        opts = request.options
        context = self.info().context_length
        prompt_ids = [list(ids) if ids is not None else None for ids in request.prompt_ids]
        if any(ids is None for ids in prompt_ids):
            prompt_ids = [list(ids) for ids in self.encode(request.prompts)]
        out: asyncio.Queue[Completion | BaseException] = asyncio.Queue()
        vllm_ids: set[str] = set()
        self._requests[request.request_id] = vllm_ids
        first_token_sent = False

        def first_token() -> None:
            nonlocal first_token_sent
            if not first_token_sent:
                first_token_sent = True
                if request.on_first_token is not None:
                    request.on_first_token()

        async def one(p: int, s: int, ids: list[int]) -> None:
            seed = row_seed(opts.seed, p, s) if opts.seed is not None else None
            params = SamplingParams(
                n=1,
                temperature=opts.temperature,
                top_p=opts.top_p,
                max_tokens=max(1, min(opts.max_tokens, context - len(ids))),
                stop=list(opts.stop) or None,
                seed=seed,
                logprobs=opts.top_k_logprobs,
                output_kind=RequestOutputKind.DELTA,
                flat_logprobs=True,
            )
            self._seq += 1
            vid = f"{request.request_id}:{p}:{s}:{self._seq}"
            vllm_ids.add(vid)
            sample = _Sample()
            self._waiting += 1
            waiting = True
            try:
                async for output in self._engine.generate(TokensPrompt(prompt_token_ids=ids), params, vid):
                    if waiting:
                        waiting = False
                        self._waiting -= 1
                        first_token()
                    for completion in output.outputs:
                        _accumulate(sample, completion)
                out.put_nowait(self._completion(sample, p, s, len(ids), opts.top_k_logprobs, opts.logprob_mode))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                out.put_nowait(exc)
            finally:
                if waiting:
                    self._waiting -= 1
                vllm_ids.discard(vid)

        tasks = [
            asyncio.ensure_future(one(p, s, ids))  # type: ignore[arg-type]  # filled above
            for p, ids in enumerate(prompt_ids)
            for s in range(opts.n)
        ]
        remaining = len(tasks)
        try:
            while remaining:
                item = await out.get()
                if isinstance(item, BaseException):
                    raise item
                remaining -= 1
                yield item
        finally:
            if remaining:
                await self.abort(request.request_id)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)
            self._requests.pop(request.request_id, None)

    def _completion(self, sample: _Sample, p: int, s: int, prompt_tokens: int, k: int, mode: str) -> Completion:
        token_lp, top_ids, top_lps = normalize(sample.columns, sample.token_ids, k, sampled_first=True)
        scores = TokenScores(sample.token_ids, token_lp, k, top_ids, top_lps, mode)  # type: ignore[arg-type]
        return Completion(
            p, s, "".join(sample.text_parts), scores, _FINISH.get(sample.finish_reason, "stop"), prompt_tokens
        )

    async def abort(self, request_id: str) -> None:
        ids = self._requests.get(request_id)
        if ids and self._engine is not None:
            await self._engine.abort(list(ids))

    # ---- score -----------------------------------------------------------------------------

    async def score(self, items: Sequence[ScoreInput], top_k: int) -> list[ScoreOutput]:
        """Prompt logprobs of prompt + completion; the completion's positions are kept.

        prompt + completion is sent as one prompt with ``prompt_logprobs=top_k`` and one token
        to generate: vLLM's teacher forcing. Candidate ids of an item go in as
        ``prompt_logprob_token_ids`` rows starting at the completion's first position (Model
        Runner V2 only; :attr:`EngineInfo.scores_candidates` says whether this engine has it).
        """
        from vllm import SamplingParams, TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        bos = self.tokenizer.bos_token_id
        prompts = [list(it.prompt_ids) if it.prompt_ids is not None else None for it in items]
        completions = [list(it.completion_ids) if it.completion_ids is not None else None for it in items]
        if any(p is None for p in prompts):
            prompts = self.encode([it.prompt for it in items])  # type: ignore[assignment]
        if any(c is None for c in completions):
            completions = self.encode([it.completion for it in items], special_tokens=False)  # type: ignore[assignment]
        base_args: dict[str, Any] = {
            "max_tokens": 1,
            "temperature": 1.0,
            "prompt_logprobs": top_k,
            "output_kind": RequestOutputKind.FINAL_ONLY,
            "flat_logprobs": True,
        }
        params = SamplingParams(**base_args)
        self._seq += 1
        base = f"score-{self._seq}-{time.monotonic_ns()}"

        async def one(j: int) -> ScoreOutput:
            p, c = prompts[j], completions[j]
            assert p is not None and c is not None
            if not p:
                if bos is None:
                    raise ValueError("an empty prompt needs a BOS token and this tokenizer has none")
                p = [bos]
            item_params, m = params, items[j].candidates_per_token
            if m and items[j].candidate_ids:
                if not self.info().scores_candidates:
                    raise ValueError("scoring candidate ids needs vLLM's Model Runner V2 (VLLM_USE_V2_MODEL_RUNNER=1)")
                # Row i predicts prompt token start + i + 1: the completion's tokens from start = len(p) - 1.
                rows = np.asarray(items[j].candidate_ids, dtype=np.int64).reshape(len(c), m)
                item_params = SamplingParams(
                    **base_args, prompt_logprob_token_ids=rows, prompt_logprob_start=len(p) - 1
                )
            final = None
            async for output in self._engine.generate(TokensPrompt(prompt_token_ids=p + c), item_params, f"{base}-{j}"):
                final = output
            assert final is not None and final.prompt_logprobs is not None
            columns = _prompt_columns(final.prompt_logprobs, len(p), len(c))
            token_lp, top_ids, top_lps = normalize(columns, c, top_k, sampled_first=True)
            candidates: list[float] = []
            if item_params is not params:
                found = getattr(final, "prompt_token_id_logprobs", None)
                if found is None:
                    raise RuntimeError("vLLM returned no prompt_token_id_logprobs for candidate ids")
                candidates = [float(v) for v in np.asarray(found, dtype=np.float64).reshape(-1)]
            return ScoreOutput(TokenScores(c, token_lp, top_k, top_ids, top_lps, "raw"), len(p), candidates)

        return list(await asyncio.gather(*(one(j) for j in range(len(items)))))


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _accumulate(sample: _Sample, completion: Any) -> None:
    """Add one DELTA ``CompletionOutput`` to ``sample``."""
    sample.text_parts.append(completion.text)
    sample.token_ids.extend(completion.token_ids)
    lp = completion.logprobs
    if lp is not None:
        if hasattr(lp, "start_indices"):
            sample.columns.extend_flat(lp.start_indices, lp.end_indices, lp.token_ids, lp.logprobs)
        else:
            sample.columns.extend_dicts([{t: v.logprob for t, v in pos.items()} if pos else None for pos in lp])
    if completion.finish_reason is not None:
        sample.finish_reason = completion.finish_reason


def _prompt_columns(prompt_logprobs: Any, prompt_len: int, completion_len: int) -> CandidateColumns:
    """Candidates of positions [prompt_len, prompt_len + completion_len) of the prompt logprobs."""
    columns = CandidateColumns()
    lo, hi = prompt_len, prompt_len + completion_len
    if hasattr(prompt_logprobs, "start_indices"):
        starts, ends = prompt_logprobs.start_indices[lo:hi], prompt_logprobs.end_indices[lo:hi]
        columns.extend_flat(starts, ends, prompt_logprobs.token_ids, prompt_logprobs.logprobs)
    else:
        columns.extend_dicts(
            [{t: v.logprob for t, v in pos.items()} if pos else None for pos in prompt_logprobs[lo:hi]]
        )
    return columns

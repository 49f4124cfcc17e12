"""vLLM backend: the ``AsyncLLM`` engine (continuous batching, paged KV cache) in this process.

vLLM batches on its own, so this adapter only maps our :class:`SamplingParams` and step outputs
to and from vLLM's, streaming deltas (``RequestOutputKind.DELTA``) and aborting on cancel.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from cotdistill.common.lm import eos_ids
from cotdistill.common.lm.loading import load_tokenizer
from cotdistill.server.engine.base import EngineLoadError, EngineStats, SamplingParams, StepOutput, TokenLogprob

log = logging.getLogger(__name__)


def vllm_available() -> bool:
    """Whether vLLM can be imported here (the CPU or CUDA build)."""
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


def _token_logprob(token: int, candidates: dict[int, Any], k: int) -> TokenLogprob:
    """One position of vLLM's logprobs (``{id: Logprob(logprob, rank)}``, the token included)."""
    ranked = sorted(
        ((tid, lp) for tid, lp in candidates.items() if lp.rank is not None and lp.rank <= k),
        key=lambda kv: kv[1].rank,
    )[:k]
    return TokenLogprob(
        token,
        float(candidates[token].logprob),
        tuple(int(t) for t, _ in ranked),
        tuple(float(lp.logprob) for _, lp in ranked),
    )


class VllmEngine:
    """A checkpoint served by vLLM's ``AsyncLLM``.

    Args:
        engine: a started ``AsyncLLM``; model_path: the checkpoint it serves.
    """

    backend = "vllm"

    def __init__(
        self,
        engine: Any,
        tokenizer: Any,
        model_path: str,
        max_model_len: int,
        vocab_size: int,
        adapters: dict[str, str] | None = None,
    ) -> None:
        self._engine = engine
        self.adapters = dict(adapters or {})  # served name -> adapter directory
        self.tokenizer = tokenizer
        self.model_path = model_path
        self.max_model_len = max_model_len
        self.vocab_size = vocab_size
        self.eos_token_id: int | None = tokenizer.eos_token_id
        # vLLM stops on the tokenizer's and the generation config's EOS; the chat template's end of
        # turn is added as stop ids, so both backends end a completion on the same set.
        self.eos_ids = eos_ids(tokenizer)
        self._running = 0

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        max_batch_size: int = 32,
        enforce_eager: bool = True,
        dtype: str = "float32",
        max_model_len: int | None = None,
        adapters: dict[str, str] | None = None,
        max_lora_rank: int = 16,
    ) -> VllmEngine:
        """Start an AsyncLLM on ``path`` (blocking; call it in a thread). Raises EngineLoadError.

        ``adapters`` ({served name: peft adapter directory}) are served beside the base model with
        vLLM's multi-LoRA batching; a request picks one by naming it as ``model``.
        """
        if not Path(path).is_dir():
            raise EngineLoadError(f"checkpoint {str(path)!r} is not a directory")
        for name, where in (adapters or {}).items():
            if not (Path(where) / "adapter_config.json").is_file():
                raise EngineLoadError(f"LoRA adapter {name!r}: {where!r} has no adapter_config.json")
        lora: dict[str, Any] = {}
        if adapters:
            lora = {"enable_lora": True, "max_loras": len(adapters), "max_lora_rank": max_lora_rank}
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            args = AsyncEngineArgs(
                model=str(path),
                dtype=dtype,  # type: ignore[arg-type]
                enforce_eager=enforce_eager,
                max_num_seqs=max_batch_size,
                # One worker runs inside the engine-core process instead of spawning another.
                distributed_executor_backend="uni",
                max_model_len=max_model_len,  # type: ignore[arg-type]  # None: the model's own length
                disable_log_stats=True,
                **lora,
            )
            engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:
            raise EngineLoadError(
                f"checkpoint {str(path)!r} failed to load in vLLM: {type(exc).__name__}: {exc}"
            ) from exc
        tokenizer = load_tokenizer(str(path))
        length = int(engine.model_config.max_model_len)
        vocab = int(engine.model_config.get_vocab_size())
        return cls(engine, tokenizer, str(path), length, vocab, adapters)

    @property
    def scores_prompts(self) -> bool:
        """Whether prompt logprobs (echo scoring) work: vLLM's CPU LoRA kernels (punica_cpu) fail on
        them with any adapter enabled and take the engine down, so such a server refuses them."""
        if not self.adapters:
            return True
        from vllm.platforms import current_platform

        return not current_platform.is_cpu()

    def _lora(self, adapter: str | None) -> Any:
        """vLLM's LoRARequest for a served adapter name (ids are stable: 1 + its position)."""
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        names = list(self.adapters)
        if adapter not in self.adapters:
            raise EngineLoadError(f"no LoRA adapter named {adapter!r}")
        return LoRARequest(adapter, names.index(adapter) + 1, self.adapters[adapter])

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    async def score(
        self, prompts: Sequence[Sequence[int]], top_k: int, adapter: str | None = None
    ) -> list[list[TokenLogprob]]:
        """Prompt logprobs from vLLM (``prompt_logprobs``; one generated token is discarded).

        vLLM schedules the prompts together; each request generates the one token vLLM requires.
        """
        from vllm import SamplingParams as VllmParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        # prompt_logprobs=0 would return only the prompt token; ask for at least 1 and trim.
        vparams = VllmParams(
            n=1,
            max_tokens=1,
            temperature=0.0,
            prompt_logprobs=max(1, top_k),
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

        lora = self._lora(adapter)

        async def one(ids: Sequence[int]) -> list[TokenLogprob]:
            request_id = f"score-{uuid.uuid4().hex}"
            final = None
            try:
                prompt = TokensPrompt(prompt_token_ids=list(ids))
                async for out in self._engine.generate(prompt, vparams, request_id, lora_request=lora):
                    final = out
            finally:
                if final is None or not final.finished:
                    await asyncio.shield(self._engine.abort(request_id))
            entries = (final.prompt_logprobs or [])[1:] if final is not None else []
            return [
                _token_logprob(int(token), candidates, top_k)
                for token, candidates in zip(list(ids)[1:], entries, strict=True)
            ]

        return list(await asyncio.gather(*(one(p) for p in prompts)))

    def stats(self) -> EngineStats:
        return EngineStats(running=self._running, waiting=0)

    async def generate(
        self, prompt_ids: Sequence[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[StepOutput]:
        from vllm import SamplingParams as VllmParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        vparams = VllmParams(
            n=1,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop) or None,
            stop_token_ids=sorted(self.eos_ids) or None,
            logprobs=params.logprobs,
            output_kind=RequestOutputKind.DELTA,
        )
        self._running += 1
        finished = False
        try:
            prompt = TokensPrompt(prompt_token_ids=list(prompt_ids))
            lora = self._lora(params.adapter)
            stream = self._engine.generate(prompt, vparams, request_id, lora_request=lora)
            async for out in stream:
                completion = out.outputs[0]
                logprobs = None
                if params.logprobs is not None and completion.logprobs is not None:
                    logprobs = [
                        _token_logprob(int(token), candidates, params.logprobs)
                        for token, candidates in zip(completion.token_ids, completion.logprobs, strict=False)
                    ]
                reason = completion.finish_reason if out.finished else None
                finish = None if reason is None else ("length" if reason == "length" else "stop")
                finished = finish is not None
                yield StepOutput(
                    text=completion.text,
                    token_ids=list(completion.token_ids),
                    logprobs=logprobs,
                    finish_reason=finish,  # type: ignore[arg-type]
                )
                if finished:
                    return
        finally:
            self._running -= 1
            if not finished:
                await asyncio.shield(self._engine.abort(request_id))

    async def close(self) -> None:
        await asyncio.to_thread(self._engine.shutdown)

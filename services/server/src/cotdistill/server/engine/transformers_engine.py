"""transformers backend with continuous (dynamic) batching on one worker thread.

Requests that arrive while others are generating join the running batch at the next step:
their prompts are prefilled together (left padding), their KV caches are left-padded to the
running batch's length and concatenated, and from then on every step is ONE forward pass over
all rows with the KV cache. Finished or cancelled rows leave the batch at once. Each row keeps
its own sampling parameters (temperature, top_p, seed, stop strings, max_tokens, logprobs).

Why a thread: a forward pass blocks for milliseconds; on the event loop it would stall every
other request's I/O. The worker hands each step's outputs back to the loop in one call.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.lm import context_length, decode_text, eos_ids, pad_id
from cotdistill.common.lm.detokenize import IncrementalText
from cotdistill.common.lm.loading import load_config, load_model, load_tokenizer
from cotdistill.common.lm.sampling import left_pad, right_pad, sample_next, seeded_generator
from cotdistill.server.engine.base import (
    EngineClosed,
    EngineLoadError,
    EngineStats,
    FinishReason,
    SamplingParams,
    StepOutput,
    TokenLogprob,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    request_id: str
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[StepOutput | BaseException]
    text: IncrementalText
    generator: Any = None  # torch.Generator for seeded requests
    generated: int = 0
    cancelled: bool = False  # set by the caller's task; read by the worker (a bool store is atomic)
    finished: bool = False
    submitted_at: float = field(default_factory=time.perf_counter)


@dataclass(eq=False)
class _ScoreJob:
    """Prompt logprobs for a few prompts, computed by the worker between generation steps."""

    prompts: list[list[int]]
    top_k: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[list[TokenLogprob]]]

    @property
    def cancelled(self) -> bool:
        return self.future.done()


# Scoring keeps (rows x length x vocab) float32 logprobs; rows per forward pass stay under this.
SCORE_BUDGET_BYTES = 256 << 20


def _resolve(job: _ScoreJob, result: list[list[TokenLogprob]] | BaseException) -> None:
    if job.future.done():  # the caller gave up (disconnect, timeout)
        return
    if isinstance(result, BaseException):
        job.future.set_exception(result)
    else:
        job.future.set_result(result)


@dataclass
class _Batch:
    """The running batch: rows, their KV cache, 2-D attention mask (B, L) and pending tokens (B,).

    Invariant: the cache holds L positions per row (left padding where mask is 0); ``last`` holds
    each row's most recent sampled token, which is not in the cache yet.
    """

    rows: list[_Request]
    cache: Any
    mask: torch.Tensor
    last: torch.Tensor
    encoder_states: Any = None  # encoder-decoder models: encoder outputs, one row per batch row


def _deliver(items: list[tuple[_Request, StepOutput | BaseException]]) -> None:
    for req, item in items:
        req.out.put_nowait(item)


class TransformersEngine:
    """A causal LM from a checkpoint directory, served with continuous batching.

    Args:
        model, tokenizer: a loaded ``AutoModelForCausalLM`` (eval mode) and its tokenizer.
        model_path: where it was loaded from (reported by /v1/models).
        max_batch_size: rows per forward pass at most; more requests wait in the engine queue.
        batch_window_s: when the engine is idle, how long the first request waits for company
            before its prefill starts (seconds; a few ms turns a burst into one batch).
        on_step: called from the worker with the number of rows of every forward pass.
    """

    backend = "transformers"
    # Decode a few prompt tokens in front of the completion (it continues the prompt's text).
    text_context = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_path: str,
        *,
        max_batch_size: int = 32,
        batch_window_s: float = 0.005,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.model_path = model_path
        self.max_batch_size = max_batch_size
        self.batch_window_s = batch_window_s
        self.max_model_len = context_length(model.config)
        self.vocab_size = int(model.config.vocab_size)
        self.eos_token_id: int | None = tokenizer.eos_token_id  # a document boundary (empty prompts)
        # Every id that ends a completion: generation config, tokenizer, chat template end of turn.
        self.eos_ids = eos_ids(tokenizer, model.config, getattr(model, "generation_config", None))
        self.pad_token_id: int = pad_id(tokenizer, self.eos_ids)
        self._on_step = on_step
        self._pending: queue.Queue[_Request | _ScoreJob | None] = queue.Queue()
        self._running = 0
        self._closed = False
        self._thread = threading.Thread(target=self._worker, name="transformers-engine", daemon=True)
        self._thread.start()

    # ---- loading -------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        max_batch_size: int = 32,
        batch_window_s: float = 0.005,
        dtype: str = "float32",
        on_step: Callable[[int], None] | None = None,
    ) -> TransformersEngine:
        """Load a checkpoint directory (blocking: call it in a thread) and smoke-test it.

        Raises EngineLoadError naming the path and the reason; nothing half-loaded is kept.
        """
        where = Path(path)
        if not where.is_dir():  # before the heavy imports: a typo fails in milliseconds
            raise EngineLoadError(f"checkpoint {str(path)!r} is not a directory")
        import torch

        try:
            config = load_config(where)
            seq2seq = bool(getattr(config, "is_encoder_decoder", False))
            tokenizer = load_tokenizer(where)
            model = load_model(where, dtype=dtype, config=config)  # safetensors only, no remote code
            model.eval()
            # A one-token forward pass proves the weights load and run (a truncated or corrupt
            # file fails here, before the checkpoint can replace a working one).
            probe = torch.tensor([[tokenizer.eos_token_id or 0]])
            with torch.inference_mode():
                if seq2seq:
                    start = torch.tensor([[model.config.decoder_start_token_id or 0]])
                    logits = model(input_ids=probe, decoder_input_ids=start).logits
                else:
                    logits = model(probe).logits
            if not bool(torch.isfinite(logits).all()):
                raise EngineLoadError(f"checkpoint {str(path)!r} produces non-finite logits")
        except EngineLoadError:
            raise
        except Exception as exc:  # any loader failure: report it, keep serving the old model
            raise EngineLoadError(f"checkpoint {str(path)!r} failed to load: {type(exc).__name__}: {exc}") from exc
        engine_cls = Seq2SeqEngine if seq2seq else cls
        return engine_cls(
            model,
            tokenizer,
            str(path),
            max_batch_size=max_batch_size,
            batch_window_s=batch_window_s,
            on_step=on_step,
        )

    # ---- the async interface -------------------------------------------------------------------

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def _decode(self, ids: list[int]) -> str:
        return decode_text(self.tokenizer, ids)

    def stats(self) -> EngineStats:
        return EngineStats(running=self._running, waiting=self._pending.qsize())

    async def generate(
        self, prompt_ids: Sequence[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[StepOutput]:
        if self._closed:
            raise EngineClosed("the engine is shut down")
        if not prompt_ids:
            raise InvalidArgument("prompt", "is empty after tokenization")
        if len(prompt_ids) >= self.max_model_len:
            raise InvalidArgument(
                "prompt", f"has {len(prompt_ids)} tokens; the model's context is {self.max_model_len}"
            )
        generator = None
        if params.seed is not None:
            generator = seeded_generator(params.seed)
        req = _Request(
            prompt_ids=list(prompt_ids),
            params=params,
            request_id=request_id,
            loop=asyncio.get_running_loop(),
            out=asyncio.Queue(),
            text=IncrementalText(self._decode, prompt_ids if self.text_context else [], params.stop),
            generator=generator,
        )
        self._pending.put(req)
        try:
            while True:
                item = await req.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            req.cancelled = True  # the worker drops the row before its next step

    async def score(
        self, prompts: Sequence[Sequence[int]], top_k: int, adapter: str | None = None
    ) -> list[list[TokenLogprob]]:
        if adapter is not None:  # settings refuse adapters on this backend; a guard for direct callers
            raise EngineLoadError("LoRA adapters are served by the vllm backend only")
        if self._closed:
            raise EngineClosed("the engine is shut down")
        for i, ids in enumerate(prompts):
            if len(ids) > self.max_model_len:
                raise InvalidArgument(
                    "prompt" if len(prompts) == 1 else f"prompt[{i}]",
                    f"has {len(ids)} tokens; the model's context is {self.max_model_len}",
                )
        loop = asyncio.get_running_loop()
        job = _ScoreJob([list(p) for p in prompts], top_k, loop, loop.create_future())
        self._pending.put(job)
        try:
            return await job.future
        finally:
            if not job.future.done():
                job.future.cancel()  # the worker skips it

    async def close(self) -> None:
        self._closed = True
        self._pending.put(None)
        await asyncio.to_thread(self._thread.join, 30)

    # ---- the worker thread ---------------------------------------------------------------------

    def _worker(self) -> None:
        torch = self._torch
        batch: _Batch | None = None
        with torch.inference_mode():
            while True:
                new: list[_Request] = []
                try:
                    taken, stop = self._take_new(batch)
                    scores = [j for j in taken if isinstance(j, _ScoreJob)]
                    if scores:
                        self._run_scores(scores)
                    new = [r for r in taken if isinstance(r, _Request) and not r.cancelled]
                    if new:
                        batch = self._prefill(new, batch)
                    elif batch is not None:
                        self._decode_step(batch)
                    if batch is not None:
                        batch = self._prune(batch)
                    self._running = len(batch.rows) if batch is not None else 0
                    if stop:
                        break
                except Exception as exc:  # a failed step fails its rows, never the engine
                    log.exception("generation step failed")
                    failed = (batch.rows if batch is not None else []) + [r for r in new if not r.finished]
                    self._send([(r, RuntimeError(f"generation failed: {type(exc).__name__}")) for r in failed])
                    batch = None
                    self._running = 0
        leftovers = (batch.rows if batch is not None else []) + self._drain_pending()
        closed = EngineClosed("the engine is shut down")
        for job in leftovers:
            if isinstance(job, _ScoreJob):
                job.loop.call_soon_threadsafe(_resolve, job, closed)
        self._send([(r, closed) for r in leftovers if isinstance(r, _Request) and not r.finished])

    def _drain_pending(self) -> list[_Request | _ScoreJob]:
        out: list[_Request | _ScoreJob] = []
        while True:
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                return out
            if item is not None:
                out.append(item)

    def _take_new(self, batch: _Batch | None) -> tuple[list[_Request | _ScoreJob], bool]:
        """New requests to start now (and whether close() was called)."""
        room = self.max_batch_size - (len(batch.rows) if batch is not None else 0)
        new: list[_Request | _ScoreJob] = []
        if batch is None:
            first = self._pending.get()  # idle: block until work arrives
            if first is None:
                return [], True
            new.append(first)
            deadline = time.perf_counter() + self.batch_window_s
            while len(new) < room:
                remaining = deadline - time.perf_counter()
                try:
                    item = self._pending.get(timeout=remaining) if remaining > 0 else self._pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    return new, True
                new.append(item)
            return new, False
        while len(new) < room:
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return new, True
            new.append(item)
        return new, False

    def _run_scores(self, jobs: list[_ScoreJob]) -> None:
        for job in jobs:
            if job.cancelled:
                continue
            try:
                result: list[list[TokenLogprob]] | BaseException = self._score(job.prompts, job.top_k)
            except Exception as exc:  # a failed scoring pass fails its request, never the engine
                log.exception("scoring failed")
                result = RuntimeError(f"scoring failed: {type(exc).__name__}")
            try:
                job.loop.call_soon_threadsafe(_resolve, job, result)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _score(self, prompts: list[list[int]], top_k: int) -> list[list[TokenLogprob]]:
        """Teacher-forced logprobs of every prompt token after the first (left-padded batches)."""
        torch = self._torch
        out: list[list[TokenLogprob]] = []
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a pass
        results: dict[int, list[TokenLogprob]] = {}
        start = 0
        while start < len(order):
            width = len(prompts[order[start]])
            rows = 1
            while start + rows < len(order) and rows < self.max_batch_size:
                wider = len(prompts[order[start + rows]])
                if (rows + 1) * wider * self.vocab_size * 4 > SCORE_BUDGET_BYTES:
                    break
                rows, width = rows + 1, wider
            chunk = order[start : start + rows]
            ids, mask, positions = left_pad([prompts[i] for i in chunk], self.pad_token_id)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            if self._on_step:
                self._on_step(rows)
            for r, i in enumerate(chunk):
                length = len(prompts[i])
                if length < 2:
                    results[i] = []
                    continue
                lp = torch.log_softmax(logits[r, width - length : width - 1].float(), dim=-1)  # (L-1, V)
                targets = ids[r, width - length + 1 :]
                chosen = lp.gather(-1, targets[:, None])[:, 0].tolist()
                if top_k > 0:
                    values, indices = lp.topk(top_k, dim=-1)
                    top_ids, top_lps = indices.tolist(), values.tolist()
                targets_list = targets.tolist()
                results[i] = [
                    TokenLogprob(
                        int(targets_list[t]),
                        float(chosen[t]),
                        tuple(top_ids[t]) if top_k > 0 else (),
                        tuple(top_lps[t]) if top_k > 0 else (),
                    )
                    for t in range(length - 1)
                ]
            start += rows
        out = [results[i] for i in range(len(prompts))]
        return out

    def _prefill(self, new: list[_Request], batch: _Batch | None) -> _Batch:
        """One forward pass over the new prompts (left-padded), then merge into the batch."""
        from transformers import DynamicCache

        ids, mask, positions = left_pad([r.prompt_ids for r in new], self.pad_token_id)
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if self._on_step:
            self._on_step(len(new))
        tokens = self._sample_and_emit(new, out.logits[:, -1, :])
        fresh = _Batch(rows=new, cache=out.past_key_values, mask=mask, last=tokens)
        return fresh if batch is None else self._merge(batch, fresh)

    def _merge(self, a: _Batch, b: _Batch) -> _Batch:
        """Concatenate two batches along rows, left-padding the shorter cache and mask."""
        torch = self._torch
        width = max(a.mask.shape[1], b.mask.shape[1])

        def pad(t: Any, dim: int) -> Any:
            missing = width - t.shape[dim]
            if missing == 0:
                return t
            shape = list(t.shape)
            shape[dim] = missing
            return torch.cat([t.new_zeros(shape), t], dim=dim)

        for la, lb in zip(a.cache.layers, b.cache.layers, strict=True):
            la.keys = torch.cat([pad(la.keys, 2), pad(lb.keys, 2)], dim=0)
            la.values = torch.cat([pad(la.values, 2), pad(lb.values, 2)], dim=0)
        return _Batch(
            rows=a.rows + b.rows,
            cache=a.cache,
            mask=torch.cat([pad(a.mask, 1), pad(b.mask, 1)], dim=0),
            last=torch.cat([a.last, b.last]),
        )

    def _decode_step(self, batch: _Batch) -> None:
        """One forward pass for every row: each row's pending token goes into the cache."""
        torch = self._torch
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.mask.shape[0], 1))], dim=1)
        positions = batch.mask.sum(-1, keepdim=True) - 1
        out = self.model(
            input_ids=batch.last[:, None],
            attention_mask=batch.mask,
            position_ids=positions,
            past_key_values=batch.cache,
            use_cache=True,
        )
        if self._on_step:
            self._on_step(len(batch.rows))
        batch.cache = out.past_key_values
        batch.last = self._sample_and_emit(batch.rows, out.logits[:, -1, :])

    def _prune(self, batch: _Batch) -> _Batch | None:
        """Drop finished and cancelled rows, and cache columns that are padding in every row."""
        torch = self._torch
        keep = [i for i, r in enumerate(batch.rows) if not (r.finished or r.cancelled)]
        if not keep:
            return None
        if len(keep) < len(batch.rows):
            index = torch.tensor(keep)
            for layer in batch.cache.layers:
                layer.batch_select_indices(index)
            batch.rows = [batch.rows[i] for i in keep]
            batch.mask = batch.mask[index]
            batch.last = batch.last[index]
            first = int(batch.mask.any(0).long().argmax())
            if first > 0:
                for layer in batch.cache.layers:
                    layer.keys = layer.keys[:, :, first:]
                    layer.values = layer.values[:, :, first:]
                batch.mask = batch.mask[:, first:]
        return batch

    def _sample_and_emit(self, rows: list[_Request], logits: torch.Tensor) -> torch.Tensor:
        """Sample one token per row with its own params; send each row its step output.

        logits: (B, V) next-token logits. Returns the sampled ids (B,).
        """
        torch = self._torch
        logits = logits.float()
        raw = torch.log_softmax(logits, dim=-1)  # logprobs before temperature (vLLM "raw_logprobs")
        temps = torch.tensor([r.params.temperature for r in rows])
        top_ps = torch.tensor([r.params.top_p for r in rows])
        # Seeded rows draw from their own generator, so their tokens do not depend on batch company.
        tokens, _ = sample_next(logits, temps, top_ps, [r.generator for r in rows])

        want = [r.params.logprobs for r in rows if r.params.logprobs is not None]
        chosen_lp: list[float] = []
        top_ids: list[list[int]] = []
        top_lps: list[list[float]] = []
        if want:
            chosen_lp = raw.gather(-1, tokens[:, None])[:, 0].tolist()
            k = max(want)
            if k > 0:
                values, indices = raw.topk(k, dim=-1)
                top_ids, top_lps = indices.tolist(), values.tolist()

        token_list = tokens.tolist()
        items: list[tuple[_Request, StepOutput | BaseException]] = []
        for i, r in enumerate(rows):
            if r.finished or r.cancelled:
                continue
            token = int(token_list[i])
            r.generated += 1
            finish: FinishReason | None = None
            if token in self.eos_ids:
                text, finish = r.text.flush(), "stop"
            else:
                text, stopped = r.text.add(token)
                if stopped:
                    finish = "stop"
                elif r.generated >= r.params.max_tokens or len(r.prompt_ids) + r.generated >= self.max_model_len:
                    text += r.text.flush()
                    finish = "length"
            logprobs = None
            if r.params.logprobs is not None:
                k = r.params.logprobs
                logprobs = [
                    TokenLogprob(
                        token,
                        float(chosen_lp[i]),
                        tuple(top_ids[i][:k]) if k else (),
                        tuple(top_lps[i][:k]) if k else (),
                    )
                ]
            if finish is not None:
                r.finished = True
            items.append((r, StepOutput(text=text, token_ids=[token], logprobs=logprobs, finish_reason=finish)))
        self._send(items)
        return tokens

    def _send(self, items: list[tuple[_Request, StepOutput | BaseException]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Request, StepOutput | BaseException]]] = {}
        for req, item in items:
            by_loop.setdefault(req.loop, []).append((req, item))
        for loop, group in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, group)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


class Seq2SeqEngine(TransformersEngine):
    """Encoder-decoder students (T5, Flan-T5; the ``ft_cot_t5`` format) with dynamic batching.

    Requests arriving within the batch window are encoded together and decoded in one batch, one
    forward pass per step with the self- and cross-attention KV caches; finished or cancelled rows
    leave the batch at once. Unlike the decoder-only engine, newcomers wait for the running batch
    to finish (their decoder caches would start at another step).
    """

    text_context = False  # the completion is a new text, not a continuation of the prompt

    def __init__(self, model: Any, tokenizer: Any, model_path: str, **kw: Any) -> None:
        super().__init__(model, tokenizer, model_path, **kw)  # context_length: T5's 512 unless the config says more
        self.decoder_start_token_id = int(model.config.decoder_start_token_id or 0)

    async def score(
        self, prompts: Sequence[Sequence[int]], top_k: int, adapter: str | None = None
    ) -> list[list[TokenLogprob]]:
        if adapter is not None:  # settings refuse adapters on this backend; a guard for direct callers
            raise EngineLoadError("LoRA adapters are served by the vllm backend only")
        raise InvalidArgument("echo", "prompt logprobs are not available for encoder-decoder models")

    def _take_new(self, batch: _Batch | None) -> tuple[list[_Request | _ScoreJob], bool]:
        if batch is not None:
            return [], False
        return super()._take_new(None)

    def _prefill(self, new: list[_Request], batch: _Batch | None) -> _Batch:
        torch = self._torch
        from transformers import DynamicCache, EncoderDecoderCache

        ids, mask = right_pad([r.prompt_ids for r in new], self.pad_token_id)
        encoder_states = self.model.get_encoder()(input_ids=ids, attention_mask=mask)
        start = torch.full((len(new), 1), self.decoder_start_token_id, dtype=torch.long)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        out = self.model(
            encoder_outputs=encoder_states,
            attention_mask=mask,
            decoder_input_ids=start,
            past_key_values=cache,
            use_cache=True,
        )
        if self._on_step:
            self._on_step(len(new))
        tokens = self._sample_and_emit(new, out.logits[:, -1, :])
        return _Batch(rows=new, cache=out.past_key_values, mask=mask, last=tokens, encoder_states=encoder_states)

    def _decode_step(self, batch: _Batch) -> None:
        out = self.model(
            encoder_outputs=batch.encoder_states,
            attention_mask=batch.mask,
            decoder_input_ids=batch.last[:, None],
            past_key_values=batch.cache,
            use_cache=True,
        )
        if self._on_step:
            self._on_step(len(batch.rows))
        batch.cache = out.past_key_values
        batch.last = self._sample_and_emit(batch.rows, out.logits[:, -1, :])

    def _prune(self, batch: _Batch) -> _Batch | None:
        torch = self._torch
        keep = [i for i, r in enumerate(batch.rows) if not (r.finished or r.cancelled)]
        if not keep:
            return None
        if len(keep) < len(batch.rows):
            index = torch.tensor(keep)
            batch.cache.batch_select_indices(index)
            batch.rows = [batch.rows[i] for i in keep]
            batch.mask = batch.mask[index]
            batch.last = batch.last[index]
            batch.encoder_states.last_hidden_state = batch.encoder_states.last_hidden_state[index]
        return batch

"""transformers backend: batched sampling with a KV cache, left padding and top-k from the scores.

The CPU default for tiny models. One worker thread owns the model (torch releases the GIL inside
its kernels, so the asyncio loop stays responsive): it takes queued samples (one row per
(prompt, sample index)) up to ``max_batch_sequences``, left-pads the prompts, prefills once and
decodes step by step with a ``DynamicCache``. Each step computes, for every row, the sampled
token, its logprob and the top-k candidates from the same log-softmax, written into preallocated
``[rows, steps(, k)]`` buffers; a finished row is turned into flat lists with one ``tolist()``
per column and handed to its request at once. Finished rows are dropped from the cache when they
make up a quarter of the batch, so long stragglers do not pay for finished neighbours.

Rows of several requests share a batch; each row keeps its own temperature, top-p, logprob mode
and k. Seeded rows sample with their own ``torch.Generator`` seeded from (seed, prompt index,
sample index), so a seeded sample does not depend on which other rows share its batch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cotdistill.common.lm import cut_at_stop
from cotdistill.common.lm.loading import load_config, load_lm
from cotdistill.common.lm.sampling import left_pad, right_pad, sample_next, seeded_generator
from cotdistill.common.models import resolve_model
from cotdistill.teacher.engine import (
    PAD_ID,
    Backend,
    Completion,
    EngineInfo,
    FinishReason,
    GenerateRequest,
    ScoreInput,
    ScoreOutput,
    TokenScores,
)
from cotdistill.teacher.tokenizer_info import describe_tokenizer, encode_texts, render_chat

log = logging.getLogger(__name__)

# Drop finished rows from the KV cache once they are this share of the batch.
_COMPACT_SHARE = 0.25
_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, prompt, sample) over 64 bits


def row_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """A per-sample seed: equal inputs give equal samples whatever the batch composition."""
    value = (seed * _MIX + prompt_index * 1_000_003 + sample_index * 7919) & ((1 << 63) - 1)
    return value


def auto_dtype(device: str, config: Any) -> str:
    """``dtype="auto"``: bfloat16 on CUDA; on a CPU, a bfloat16 checkpoint stays bfloat16 where
    the CPU computes bf16 natively (AVX512-BF16 or AMX), else float32.

    Measured on Qwen2.5-Coder-0.5B (2 cores, 1 thread): bf16 decodes 2.6x faster than fp32, as
    vLLM's CPU backend runs it; logits are then bf16-rounded like vLLM's, log-softmax in fp32.
    """
    if device.startswith("cuda"):
        return "bfloat16"
    stored = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "")
    return "bfloat16" if stored.endswith("bfloat16") and native_bf16_cpu() else "float32"


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 arithmetic (Linux ``/proc/cpuinfo`` flags; False elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


GQA_ATTENTION = "cotdistill_sdpa_gqa"


def gqa_sdpa_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any
) -> tuple[Any, None]:
    """transformers' ``sdpa`` attention, except that with a padding mask and fewer K/V heads than
    query heads it lets torch group the heads (``enable_gqa``) instead of copying K/V per head.

    transformers copies (``repeat_kv``) whenever there is a mask, because CUDA kernels then fall
    back to math; on CPU the copies were a quarter of a Qwen-0.5B decode step (14 query heads on
    2 K/V heads, 80 left-padded rows) and ``enable_gqa`` attention is 6x faster than copy + SDPA.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if groups == 1 or attention_mask is None or query.device.type != "cpu" or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=kwargs.get("dropout", 0.0),
        scale=kwargs.get("scaling"),
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


def register_gqa_attention() -> str:
    """Register :func:`gqa_sdpa_attention` (with sdpa's masks) with transformers; its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GQA_ATTENTION, gqa_sdpa_attention)
    AttentionMaskInterface.register(GQA_ATTENTION, sdpa_mask)
    return GQA_ATTENTION


@dataclass(eq=False)
class _RequestState:
    request: GenerateRequest
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Completion | BaseException]
    aborted: bool = False
    first_token_sent: bool = False

    def deliver(self, item: Completion | BaseException) -> None:
        """Hand a result to the request's consumer (called from the worker thread)."""
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)

    def first_token(self) -> None:
        if not self.first_token_sent:
            self.first_token_sent = True
            callback = self.request.on_first_token
            if callback is not None:
                callback()


@dataclass(eq=False, slots=True)
class _Row:
    state: _RequestState
    prompt_index: int
    sample_index: int
    prompt_ids: list[int]


@dataclass(eq=False)
class _ScoreJob:
    items: Sequence[ScoreInput]
    top_k: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[ScoreOutput]]


@dataclass
class _Queues:
    rows: collections.deque[_Row] = field(default_factory=collections.deque)
    scores: collections.deque[_ScoreJob] = field(default_factory=collections.deque)


class TransformersEngine:
    """Batched sampling with Hugging Face transformers (see the module docstring).

    Args:
        model_path: a local model directory (config, safetensors, tokenizer).
        device: "auto" (CUDA when visible, else CPU), "cpu" or "cuda[:i]".
        dtype: "auto" (see :func:`auto_dtype`), "float32", "bfloat16" or "float16".
        max_batch_sequences: rows (prompt x sample) decoded together.
        max_model_len: context length cap; 0 uses the model's ``max_position_embeddings``.
        max_top_k: the largest k requests may ask for.
        num_threads: torch intra-op threads; 0 leaves torch's default.
    """

    backend: Backend = "transformers"

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_batch_sequences: int = 256,
        max_model_len: int = 0,
        max_top_k: int = 20,
        num_threads: int = 0,
    ) -> None:
        self.model_path = model_path
        self._device_name = device
        self._dtype_name = dtype
        self.max_batch_sequences = max_batch_sequences
        self._max_model_len = max_model_len
        self.max_top_k = max_top_k
        self._num_threads = num_threads
        self._queues = _Queues()
        self._cv = threading.Condition()
        self._states: dict[str, _RequestState] = {}
        self._closing = False
        self._worker: threading.Thread | None = None
        self._worker_error: BaseException | None = None
        self._info: EngineInfo | None = None
        self.model: Any = None
        self.tokenizer: Any = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._worker = threading.Thread(target=self._run_worker, name="teacher-transformers", daemon=True)
        self._worker.start()

    def _load(self) -> None:
        import torch

        where = str(resolve_model(self.model_path))  # a registry name materializes into the models cache
        device = self._device_name
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype_name = self._dtype_name
        if dtype_name == "auto":
            dtype_name = auto_dtype(device, load_config(where))
        self.device = torch.device(device)
        # On CPU, grouped-query attention without copying K/V per query head (see gqa_sdpa_attention).
        lm = load_lm(
            where,
            dtype=dtype_name,
            device=self.device,
            attn_implementation=register_gqa_attention() if device == "cpu" else None,
            max_context=self._max_model_len,
        )
        self.model, self.tokenizer = lm.model, lm.tokenizer
        self.vocab_size = lm.vocab_size
        self.context_length = lm.context_length
        self.eos_ids = lm.eos_ids
        self.pad_id = lm.pad_id
        self._info = EngineInfo(
            model_id=self.model_path,
            backend="transformers",
            tokenizer=describe_tokenizer(self.tokenizer, self.model_path, self.vocab_size),
            context_length=self.context_length,
            max_top_k=self.max_top_k,
            scores_candidates=True,  # the full log-softmax is at hand: any id can be gathered
            extra={"device": str(self.device), "dtype": dtype_name},
        )
        log.info("transformers engine loaded %s on %s (%s)", self.model_path, self.device, dtype_name)

    async def close(self) -> None:
        with self._cv:
            self._closing = True
            for state in self._states.values():
                state.aborted = True
            self._cv.notify_all()
        if self._worker is not None:
            await asyncio.to_thread(self._worker.join, 30)

    def info(self) -> EngineInfo:
        if self._info is None:
            raise RuntimeError("engine not started")
        return self._info

    async def check_health(self) -> None:
        if self._worker_error is not None:
            raise RuntimeError(f"worker failed: {self._worker_error!r}")
        if self._worker is None or not self._worker.is_alive():
            raise RuntimeError("worker thread is not running")

    def queue_depth(self) -> int:
        """Samples waiting for a batch slot."""
        return len(self._queues.rows)

    def active_requests(self) -> int:
        """Requests with samples queued or being decoded (tests check that aborts free them)."""
        return len(self._states)

    def render_chat(self, messages: Sequence[Mapping[str, str]], assistant_prefix: str) -> str | None:
        return render_chat(self.tokenizer, messages, assistant_prefix)

    def encode(self, texts: Sequence[str], *, special_tokens: bool = True) -> list[list[int]]:
        return encode_texts(self.tokenizer, texts, special_tokens=special_tokens)

    # ---- async API -------------------------------------------------------------------------

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Completion]:
        loop = asyncio.get_running_loop()
        state = _RequestState(request, loop, asyncio.Queue())
        prompt_ids = [list(ids) if ids is not None else None for ids in request.prompt_ids]
        if any(ids is None for ids in prompt_ids):
            prompt_ids = [list(ids) for ids in self.encode(request.prompts)]
        rows = [
            _Row(state, p, s, ids)  # type: ignore[arg-type]  # filled above
            for p, ids in enumerate(prompt_ids)
            for s in range(request.options.n)
        ]
        remaining = len(rows)
        with self._cv:
            if self._closing:
                raise RuntimeError("engine is shutting down")
            self._states[request.request_id] = state
            self._queues.rows.extend(rows)
            self._cv.notify_all()
        try:
            while remaining:
                item = await state.out.get()
                if isinstance(item, BaseException):
                    raise item
                remaining -= 1
                yield item
        finally:
            if remaining:
                await self.abort(request.request_id)
            with self._cv:
                self._states.pop(request.request_id, None)

    async def abort(self, request_id: str) -> None:
        with self._cv:
            state = self._states.pop(request_id, None)
            if state is None:
                return
            state.aborted = True
            # Queued rows never reach the model; rows in the running batch stop at the next step.
            self._queues.rows = collections.deque(r for r in self._queues.rows if r.state is not state)

    async def score(self, items: Sequence[ScoreInput], top_k: int) -> list[ScoreOutput]:
        loop = asyncio.get_running_loop()
        job = _ScoreJob(items, top_k, loop, loop.create_future())
        with self._cv:
            if self._closing:
                raise RuntimeError("engine is shutting down")
            self._queues.scores.append(job)
            self._cv.notify_all()
        return await job.future

    # ---- worker thread ---------------------------------------------------------------------

    def _run_worker(self) -> None:
        import torch

        if self._num_threads > 0:
            # OpenMP thread counts are per calling thread: set it where the model runs. One thread
            # is fastest for tiny models, and on a busy machine spinning OpenMP workers cost 10x.
            torch.set_num_threads(self._num_threads)
        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._queues.rows and not self._queues.scores and not self._closing:
                        self._cv.wait()
                    if self._closing:
                        self._fail_all(RuntimeError("engine is shutting down"))
                        return
                    job = self._queues.scores.popleft() if self._queues.scores else None
                    rows: list[_Row] = []
                    if job is None:
                        while self._queues.rows and len(rows) < self.max_batch_sequences:
                            row = self._queues.rows.popleft()
                            if not row.state.aborted:
                                rows.append(row)
                try:
                    if job is not None:
                        self._run_score_job(job)
                    elif rows:
                        self._generate_batch(rows)
                except Exception as exc:  # deliver to the callers; the worker keeps serving
                    log.exception("transformers engine batch failed")
                    if job is not None:
                        job.loop.call_soon_threadsafe(_set_exception, job.future, exc)
                    for state in {id(r.state): r.state for r in rows}.values():
                        state.deliver(exc)

    def _fail_all(self, error: BaseException) -> None:
        for row in self._queues.rows:
            row.state.deliver(error)
        self._queues.rows.clear()
        for job in self._queues.scores:
            job.loop.call_soon_threadsafe(_set_exception, job.future, error)
        self._queues.scores.clear()

    def _run_score_job(self, job: _ScoreJob) -> None:
        result = self._score(job.items, job.top_k)
        job.loop.call_soon_threadsafe(_set_result, job.future, result)

    def _generate_batch(self, rows: list[_Row]) -> None:
        import torch

        dev = self.device
        b = len(rows)
        opts = [r.state.request.options for r in rows]
        lens = [len(r.prompt_ids) for r in rows]
        # Rows with the same prompt (the n samples of a prompt) share one prefill: it runs on the
        # distinct prompts and the cache is then repeated for every row (D=2 halves the prefill).
        distinct: dict[tuple[int, ...], int] = {}
        source = [distinct.setdefault(tuple(r.prompt_ids), len(distinct)) for r in rows]
        input_ids, mask, positions = left_pad(list(distinct), self.pad_id)
        input_ids, mask, positions = input_ids.to(dev), mask.to(dev), positions.to(dev)
        expand = torch.tensor(source, device=dev) if len(distinct) < b else None

        max_new = [max(1, min(o.max_tokens, self.context_length - n)) for o, n in zip(opts, lens, strict=True)]
        steps = max(max_new)
        k_max = max(o.top_k_logprobs for o in opts)
        k_eff = min(k_max, self.vocab_size)
        temps = torch.tensor([o.temperature for o in opts], dtype=torch.float32, device=dev)
        top_ps = torch.tensor([o.top_p for o in opts], dtype=torch.float32, device=dev)
        greedy = temps <= 0
        processed = torch.tensor([o.logprob_mode == "processed" for o in opts], device=dev) & ~greedy
        generators: list[torch.Generator | None] = [
            seeded_generator(row_seed(o.seed, r.prompt_index, r.sample_index), dev)
            if o.seed is not None and o.temperature > 0
            else None
            for r, o in zip(rows, opts, strict=True)
        ]
        stops = [o.stop for o in opts]
        stop_window = [max((len(s) for s in st), default=0) + 2 for st in stops]
        stop_tokens: dict[int, list[int]] = {i: [] for i, st in enumerate(stops) if st}

        tok_buf = torch.zeros((b, steps), dtype=torch.long, device=dev)
        lp_buf = torch.zeros((b, steps), dtype=torch.float32, device=dev)
        top_id_buf = torch.full((b, steps, k_max), PAD_ID, dtype=torch.int32, device=dev)
        top_lp_buf = torch.full((b, steps, k_max), float("-inf"), dtype=torch.float32, device=dev)

        from transformers import DynamicCache

        cache = DynamicCache()
        active = torch.arange(b, device=dev)  # original row index of each cache row
        active_list = list(range(b))
        done = [False] * b
        cur_ids, cur_pos = input_ids, positions

        for t in range(steps):
            out = self.model(
                input_ids=cur_ids,
                attention_mask=mask,
                position_ids=cur_pos,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float()  # [A, V]
            if t == 0 and expand is not None:  # one prefill per distinct prompt -> one row per sample
                cache.batch_select_indices(expand)
                logits, mask, cur_pos = logits[expand], mask[expand], cur_pos[expand]
            raw = torch.log_softmax(logits, dim=-1)
            tokens, scaled = sample_next(logits, temps[active], top_ps[active], [generators[i] for i in active_list])
            lp = raw
            a_processed = processed[active]
            if bool(a_processed.any()):
                lp = torch.where(a_processed[:, None], torch.log_softmax(scaled, dim=-1), raw)
            tok_buf[active, t] = tokens
            lp_buf[active, t] = lp.gather(1, tokens[:, None]).squeeze(1)
            if k_eff:
                values, ids = lp.topk(k_eff, dim=-1)
                top_lp_buf[active, t, :k_eff] = values
                top_id_buf[active, t, :k_eff] = ids.to(torch.int32)
            if t == 0:
                for r in rows:
                    r.state.first_token()

            token_list = tokens.tolist()
            newly_done = 0
            for pos, i in enumerate(active_list):
                if done[i]:
                    continue
                state = rows[i].state
                reason: FinishReason | None = None
                tok = token_list[pos]
                if state.aborted:
                    done[i] = True
                    newly_done += 1
                    continue
                if tok in self.eos_ids:
                    reason = "stop"
                elif i in stop_tokens:
                    stop_tokens[i].append(tok)
                    tail = self.tokenizer.decode(stop_tokens[i][-stop_window[i] :], skip_special_tokens=True)
                    if any(s in tail for s in stops[i]):
                        reason = "stop"
                if reason is None and t + 1 >= max_new[i]:
                    reason = "length"
                if reason is not None:
                    done[i] = True
                    newly_done += 1
                    state.deliver(self._completion(rows[i], i, t + 1, reason, tok_buf, lp_buf, top_id_buf, top_lp_buf))
            remaining = [pos for pos, i in enumerate(active_list) if not done[i]]
            if not remaining:
                break
            next_ids = tokens[:, None]
            next_pos = cur_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(next_ids)], dim=1)
            if len(remaining) <= (1 - _COMPACT_SHARE) * len(active_list):
                keep = torch.tensor(remaining, device=dev)
                cache.batch_select_indices(keep)
                mask, next_ids, next_pos = mask[keep], next_ids[keep], next_pos[keep]
                active = active[keep]
                active_list = [active_list[pos] for pos in remaining]
            cur_ids, cur_pos = next_ids, next_pos

    def _completion(
        self,
        row: _Row,
        i: int,
        length: int,
        reason: FinishReason,
        tok_buf: Any,
        lp_buf: Any,
        top_id_buf: Any,
        top_lp_buf: Any,
    ) -> Completion:
        options = row.state.request.options
        k = options.top_k_logprobs
        token_ids = tok_buf[i, :length].tolist()
        top_ids = top_id_buf[i, :length, :k].reshape(-1).tolist() if k else []
        top_lps = top_lp_buf[i, :length, :k].reshape(-1).tolist() if k else []
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        if options.stop:
            text = cut_at_stop(text, options.stop)
        scores = TokenScores(
            token_ids=token_ids,
            token_logprobs=lp_buf[i, :length].tolist(),
            k=k,
            top_ids=top_ids,
            top_logprobs=top_lps,
            mode=options.logprob_mode if options.temperature > 0 else "raw",
        )
        return Completion(row.prompt_index, row.sample_index, text, scores, reason, len(row.prompt_ids))

    def _score(self, items: Sequence[ScoreInput], top_k: int) -> list[ScoreOutput]:
        import torch

        bos = self.tokenizer.bos_token_id
        prompts = [list(it.prompt_ids) if it.prompt_ids is not None else None for it in items]
        completions = [list(it.completion_ids) if it.completion_ids is not None else None for it in items]
        if any(p is None for p in prompts):
            prompts = self.encode([it.prompt for it in items])  # type: ignore[assignment]
        if any(c is None for c in completions):
            completions = self.encode([it.completion for it in items], special_tokens=False)  # type: ignore[assignment]
        seqs: list[tuple[list[int], list[int]]] = []
        for p, c in zip(prompts, completions, strict=True):
            assert p is not None and c is not None
            if not p:
                if bos is None:
                    raise ValueError("an empty prompt needs a BOS token and this tokenizer has none")
                p = [bos]
            seqs.append((p, c))
        results: list[ScoreOutput | None] = [None] * len(seqs)
        k_eff = min(top_k, self.vocab_size)
        order = sorted(range(len(seqs)), key=lambda j: len(seqs[j][0]) + len(seqs[j][1]))
        for start in range(0, len(order), self.max_batch_sequences):
            chunk = order[start : start + self.max_batch_sequences]
            ids, mask = right_pad([seqs[j][0] + seqs[j][1] for j in chunk], self.pad_id)
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            for row, j in enumerate(chunk):
                p, c = seqs[j]
                # fp32 only for the completion rows: a (B, W, V) fp32 copy of a 150k-vocab
                # teacher's logits would be gigabytes for prompts nobody scores.
                lp = torch.log_softmax(logits[row, len(p) - 1 : len(p) + len(c) - 1].float(), dim=-1)  # [T, V]
                target = torch.tensor(c, device=lp.device)
                token_lp = lp.gather(1, target[:, None]).squeeze(1)
                top_ids: list[int] = []
                top_lps: list[float] = []
                if top_k:
                    values, cand = lp.topk(k_eff, dim=-1)
                    if k_eff < top_k:
                        pad = top_k - k_eff
                        values = torch.nn.functional.pad(values, (0, pad), value=float("-inf"))
                        cand = torch.nn.functional.pad(cand, (0, pad), value=PAD_ID)
                    top_ids, top_lps = cand.reshape(-1).tolist(), values.reshape(-1).tolist()
                scores = TokenScores(c, token_lp.tolist(), top_k, top_ids, top_lps, "raw")
                results[j] = ScoreOutput(scores, len(p), _candidate_logprobs(lp, items[j]))
        return [r for r in results if r is not None]


def _candidate_logprobs(logprobs: Any, item: ScoreInput) -> list[float]:
    """Logprobs (T*m, row-major) of ``item.candidate_ids`` from the completion's [T, V] log-softmax."""
    import torch

    m = item.candidates_per_token
    if not m or not item.candidate_ids:
        return []
    ids = torch.tensor(list(item.candidate_ids), dtype=torch.long, device=logprobs.device).view(-1, m)
    values = logprobs.gather(1, ids.clamp(min=0)).masked_fill(ids < 0, float("-inf"))
    return [float(v) for v in values.reshape(-1).tolist()]


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)

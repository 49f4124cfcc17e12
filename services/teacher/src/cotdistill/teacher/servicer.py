"""gRPC servicer of the teacher: validation, admission control and streaming around the engine.

Flow of a Sample call: validate (INVALID_ARGUMENT naming the field) -> admit (RESOURCE_EXHAUSTED
when ``max_in_flight`` requests run already) -> stream each finished sample as it arrives. If the
client cancels or its deadline passes, the handler is cancelled and the generation is aborted in
the engine, so no compute is spent on results nobody reads.

Errors become status codes through ``unary_errors`` / ``stream_errors`` and every call is counted
by the shared metrics interceptor (``cotdistill_grpc_*``), as in the trainer and the evaluator;
the metrics here are only the teacher's own (admission, tokens, time to first token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc

from cotdistill.common import enums
from cotdistill.common.errors import ResourceExhausted, Unavailable
from cotdistill.common.grpc_errors import stream_errors, unary_errors
from cotdistill.teacher import validation
from cotdistill.teacher.engine import Completion, Engine, GenerateRequest, SamplingOptions, ScoreInput, TokenScores
from cotdistill.teacher.metrics import TeacherMetrics
from cotdistill.teacher.prompts import DatasetPrompts
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.v1 import common_pb2, teacher_pb2, teacher_pb2_grpc

log = logging.getLogger(__name__)

_MODES = enums.names(common_pb2.LogprobMode)
_FINISH = enums.names(common_pb2.FinishReason)


def _service_version() -> str:
    try:
        return version("cotdistill-teacher")
    except PackageNotFoundError:
        return "0+unknown"


def token_logprobs(scores: TokenScores) -> common_pb2.TokenLogprobs:
    """Packed columns straight from the engine's flat lists (no per-token messages)."""
    return common_pb2.TokenLogprobs(
        token_ids=scores.token_ids,
        token_logprobs=scores.token_logprobs,
        k=scores.k,
        top_ids=scores.top_ids,
        top_logprobs=scores.top_logprobs,
        mode=_MODES.value(scores.mode),
    )


@dataclass(slots=True)
class _PreparedSample:
    engine_request: GenerateRequest
    prompt_ids: list[str]
    prompt_texts: list[str]
    prompt_tokens: list[int]
    two_stage: validation.TwoStageOptions | None
    dataset: DatasetPrompts | None
    templated: list[bool]


class TeacherServicer(teacher_pb2_grpc.TeacherServiceServicer):
    """Implements cotdistill.v1.TeacherService over one :class:`Engine`."""

    def __init__(self, settings: TeacherSettings, engine: Engine, metrics: TeacherMetrics) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.ready = False
        self._in_flight = 0
        self._cleanup: set[asyncio.Task[None]] = set()  # keeps abort tasks alive until they ran
        metrics.max_in_flight.set(settings.max_in_flight)
        metrics.set_queue_source(engine.queue_depth)

    # ---- admission ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _admitted(self) -> Any:
        if self._in_flight >= self.settings.max_in_flight:
            raise ResourceExhausted(
                f"this replica runs {self._in_flight} requests (max_in_flight={self.settings.max_in_flight}); "
                "retry later or on another replica"
            )
        self._in_flight += 1
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self._in_flight -= 1
            self.metrics.in_flight.dec()

    def _check_ready(self) -> None:
        if not self.ready:
            raise Unavailable("the teacher model is still loading; wait for health SERVING")

    # ---- Sample ------------------------------------------------------------------------------

    @stream_errors
    async def Sample(
        self, request: teacher_pb2.SampleRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[teacher_pb2.SampleResponse]:
        arrived = time.perf_counter()
        self._check_ready()
        prepared = self._prepare_sample(request)
        with self._admitted():
            # Belt and braces: however the handler ends (cancel, deadline, shutdown), the engine
            # drops the request; aborting a finished request is a no-op.
            context.add_done_callback(self._abort_on_done(prepared.engine_request.request_id))
            async for response in self._run_sample(prepared, arrived):
                yield response

    def _abort_on_done(self, request_id: str) -> Any:
        loop = asyncio.get_running_loop()

        def done(_: Any) -> None:
            for rid in (request_id, f"{request_id}-answer"):
                task = loop.create_task(self.engine.abort(rid))
                self._cleanup.add(task)
                task.add_done_callback(self._cleanup.discard)

        return done

    def _prepare_sample(self, request: teacher_pb2.SampleRequest) -> _PreparedSample:
        info = self.engine.info()
        settings = self.settings
        validation.check_prompt_count(len(request.prompts), "prompts", settings)
        options = validation.sampling_options(request.params, info, settings)
        validation.check_sample_budget(len(request.prompts), options.n, settings)
        texts: list[str | None] = [validation.literal_prompt(p, i) for i, p in enumerate(request.prompts)]
        records = [(i, p.record_id) for i, p in enumerate(request.prompts) if p.WhichOneof("source") == "record_id"]
        dataset: DatasetPrompts | None = None
        if request.dataset:
            dataset = DatasetPrompts(
                request.dataset, request.split, request.prompt_format, self.settings.data_dir or None
            )
        elif records:
            raise validation.InvalidArgument("dataset", "record_id prompts need a dataset name")
        templated = [p.WhichOneof("source") == "chat" for p in request.prompts]
        for i, p in enumerate(request.prompts):
            if templated[i]:
                messages, prefix = validation.chat_prompt(p.chat, f"prompts[{i}].chat")
                texts[i] = self._render_chat(messages, prefix, f"prompts[{i}].chat")
        if records:
            assert dataset is not None
            if validation.use_chat_template(
                request.prompt_template, bool(info.tokenizer and info.tokenizer.chat_template)
            ):
                system = validation.system_prompt(request.system_prompt)
                for i, chat in dataset.chat(records, system).items():
                    texts[i] = self._render_chat(chat.as_dicts(), chat.prefix, "prompt_template")
                    templated[i] = True
            else:
                for i, text in dataset.render(records).items():
                    texts[i] = text
        prompt_texts = [t or "" for t in texts]
        two_stage = validation.two_stage_options(request, dataset.trigger() if dataset else None)
        prompt_ids = self._encode_prompts(prompt_texts, templated)
        ids_per_prompt: list[Sequence[int] | None] = (
            list(prompt_ids) if prompt_ids is not None else [None] * len(prompt_texts)
        )
        fields = [f"prompts[{i}].{p.WhichOneof('source')}" for i, p in enumerate(request.prompts)]
        validation.check_prompt_lengths(ids_per_prompt, info.context_length, fields)
        engine_request = GenerateRequest(
            request_id=f"{request.request_id or 'sample'}-{uuid.uuid4().hex[:12]}",
            prompts=prompt_texts,
            prompt_ids=ids_per_prompt,
            options=options,
        )
        return _PreparedSample(
            engine_request,
            [p.id for p in request.prompts],
            prompt_texts,
            [len(ids) if ids is not None else 0 for ids in ids_per_prompt],
            two_stage,
            dataset,
            templated,
        )

    def _render_chat(self, messages: Sequence[Mapping[str, str]], prefix: str, field: str) -> str:
        text = self.engine.render_chat(messages, prefix)
        if text is None:
            raise validation.InvalidArgument(field, "the teacher model's tokenizer has no chat template; send text")
        return text

    def _encode_prompts(self, texts: list[str], templated: list[bool]) -> list[list[int]] | None:
        """Token ids of every prompt. A chat template writes its special tokens (BOS included) into
        the text, so templated prompts are tokenized without adding them again, as vLLM does."""
        if not any(templated):
            return self.engine.encode(texts)
        plain = self.engine.encode([t for t, chat in zip(texts, templated, strict=True) if not chat])
        chat = self.engine.encode([t for t, c in zip(texts, templated, strict=True) if c], special_tokens=False)
        if plain is None or chat is None:
            return None
        plain_it, chat_it = iter(plain), iter(chat)
        return [next(chat_it) if c else next(plain_it) for c in templated]

    async def _run_sample(self, prepared: _PreparedSample, arrived: float) -> AsyncIterator[teacher_pb2.SampleResponse]:
        """``arrived``: the request's arrival (``time.perf_counter()``), for the time to first token."""
        loop = asyncio.get_running_loop()
        first_token: list[float] = []

        def on_first_token() -> None:
            # May run on an engine thread: hop onto the loop's thread to touch metrics state once.
            loop.call_soon_threadsafe(_first_token_seen, first_token, arrived, self.metrics)

        prepared.engine_request.on_first_token = on_first_token
        if prepared.two_stage is None:
            async for completion in self._generate(prepared.engine_request):
                yield self._sample_response(prepared, completion, None)
            return
        # Two-stage Zero-shot-CoT: all rationales first, then one greedy batch of answers.
        rationales = [c async for c in self._generate(prepared.engine_request)]
        answers = await self._answer_stage(prepared, rationales)
        for completion, answer in zip(rationales, answers, strict=True):
            yield self._sample_response(prepared, completion, answer)

    async def _generate(self, engine_request: GenerateRequest) -> AsyncIterator[Completion]:
        """Engine results; on early exit (cancel, deadline, error) the generation is aborted."""
        finished = False
        stream = self.engine.generate(engine_request)
        try:
            async for completion in stream:
                self.metrics.record_generated(len(completion.scores.token_ids))
                self.metrics.samples.labels(completion.finish_reason).inc()
                self.metrics.prompt_tokens.labels("Sample").inc(completion.prompt_tokens)
                yield completion
            finished = True
        finally:
            if not finished:
                self.metrics.aborted.inc()
                await _shielded(self.engine.abort(engine_request.request_id))
                with contextlib.suppress(Exception):
                    await _shielded(stream.aclose())  # type: ignore[attr-defined]

    async def _answer_stage(self, prepared: _PreparedSample, rationales: list[Completion]) -> list[Completion | None]:
        stage = prepared.two_stage
        assert stage is not None
        texts = [prepared.prompt_texts[c.prompt_index] + c.text + stage.trigger for c in rationales]
        ids = self._encode_prompts(texts, [prepared.templated[c.prompt_index] for c in rationales])
        context = self.engine.info().context_length
        usable = [
            i for i in range(len(texts)) if ids is None or (ids[i] and len(ids[i]) < context)
        ]  # an answer prompt that no longer fits the context gets no answer
        request = GenerateRequest(
            request_id=f"{prepared.engine_request.request_id}-answer",
            prompts=[texts[i] for i in usable],
            prompt_ids=[ids[i] if ids is not None else None for i in usable],
            options=SamplingOptions(n=1, temperature=0.0, max_tokens=stage.max_tokens),
        )
        answers: list[Completion | None] = [None] * len(rationales)
        if usable:
            async for answer in self._generate(request):
                answers[usable[answer.prompt_index]] = answer
        return answers

    def _sample_response(
        self, prepared: _PreparedSample, completion: Completion, answer: Completion | None
    ) -> teacher_pb2.SampleResponse:
        p = completion.prompt_index
        completion_tokens = len(completion.scores.token_ids) + (len(answer.scores.token_ids) if answer else 0)
        response = teacher_pb2.SampleResponse(
            prompt_index=p,
            prompt_id=prepared.prompt_ids[p],
            sample_index=completion.sample_index,
            text=completion.text,
            logprobs=token_logprobs(completion.scores),
            finish_reason=_FINISH.value(completion.finish_reason),
            usage=common_pb2.Usage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion_tokens),
            prompt_text=prepared.prompt_texts[p],
        )
        if prepared.two_stage is not None:
            response.answer_text = answer.text if answer is not None else ""
        if prepared.dataset is not None:
            if prepared.two_stage is not None:
                found = prepared.dataset.extract(response.answer_text, after_trigger=True)
            else:
                found = prepared.dataset.extract(completion.text, after_trigger=False)
            if found is not None:
                response.extracted_answer = found
        return response

    # ---- Score -------------------------------------------------------------------------------

    @unary_errors
    async def Score(
        self, request: teacher_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> teacher_pb2.ScoreResponse:
        self._check_ready()
        info = self.engine.info()
        validation.check_score_request(request, info, self.settings)
        items, prompt_texts = self._prepare_score(request, info.context_length)
        with self._admitted():
            outputs = await self.engine.score(items, request.top_k_logprobs)
        response = teacher_pb2.ScoreResponse(
            completions=[
                teacher_pb2.ScoredCompletion(
                    id=item.id,
                    logprobs=token_logprobs(out.scores),
                    prompt_tokens=out.prompt_tokens,
                    prompt_text=text,
                    candidate_logprobs=out.candidate_logprobs,
                )
                for item, out, text in zip(request.items, outputs, prompt_texts, strict=True)
            ]
        )
        self.metrics.prompt_tokens.labels("Score").inc(sum(o.prompt_tokens for o in outputs))
        self.metrics.scored_tokens.inc(sum(len(o.scores.token_ids) for o in outputs))
        return response

    def _prepare_score(
        self, request: teacher_pb2.ScoreRequest, context_length: int
    ) -> tuple[list[ScoreInput], list[str]]:
        """Engine inputs of a validated Score request, and each item's prompt as the model sees it.

        Chat items render through the chat template as Sample's chat prompts do, and, like them
        (and like ``prompt_rendered`` text), are tokenized without adding special tokens again:
        the same prompt tokens the teacher sampled from. ``completion_ids`` are used as given.
        """
        texts: list[str] = []
        templated: list[bool] = []
        for i, item in enumerate(request.items):
            if item.HasField("chat"):
                messages, prefix = validation.chat_prompt(item.chat, f"items[{i}].chat")
                texts.append(self._render_chat(messages, prefix, f"items[{i}].chat"))
                templated.append(True)
            else:
                texts.append(item.prompt)
                templated.append(item.prompt_rendered)
        prompt_ids = self._encode_prompts(texts, templated)
        completion_ids: list[list[int] | None] = [list(it.completion_ids) or None for it in request.items]
        need = [i for i, ids in enumerate(completion_ids) if ids is None]
        encoded = self.engine.encode([request.items[i].completion for i in need], special_tokens=False) if need else []
        if encoded is not None:
            for i, ids in zip(need, encoded, strict=True):
                completion_ids[i] = ids
        if prompt_ids is not None and all(c is not None for c in completion_ids):
            validation.check_score_lengths(prompt_ids, completion_ids, context_length)  # type: ignore[arg-type]
        items = [
            ScoreInput(
                texts[i],
                item.completion,
                prompt_ids[i] if prompt_ids is not None else None,
                completion_ids[i],
                list(item.candidate_ids),
                item.candidates_per_token,
            )
            for i, item in enumerate(request.items)
        ]
        return items, texts

    # ---- Info --------------------------------------------------------------------------------

    @unary_errors
    async def Info(
        self, request: teacher_pb2.InfoRequest, context: grpc.aio.ServicerContext
    ) -> teacher_pb2.InfoResponse:
        self._check_ready()
        info = self.engine.info()
        tokenizer = None
        if info.tokenizer is not None:
            t = info.tokenizer
            tokenizer = common_pb2.TokenizerInfo(
                name=t.name,
                vocab_size=t.vocab_size,
                tokenizer_vocab_size=t.tokenizer_vocab_size,
                bos_token_id=t.bos_token_id,
                eos_token_id=t.eos_token_id,
                pad_token_id=t.pad_token_id,
                content_hash=t.content_hash,
                chat_template=t.chat_template,
            )
        return teacher_pb2.InfoResponse(
            model_id=info.model_id,
            backend=info.backend,
            tokenizer=tokenizer,
            max_top_k=min(info.max_top_k, self.settings.max_top_k),
            context_length=info.context_length,
            max_in_flight=self.settings.max_in_flight,
            version=_service_version(),
            scores_candidates=info.scores_candidates and info.supports_score,
        )


def _first_token_seen(first_token: list[float], arrived: float, metrics: TeacherMetrics) -> None:
    if not first_token:
        first_token.append(time.perf_counter())
        metrics.ttft.observe(first_token[0] - arrived)


async def _shielded(awaitable: Any) -> Any:
    """Finish clean-up even when the surrounding task is being cancelled."""
    return await asyncio.shield(asyncio.ensure_future(awaitable))

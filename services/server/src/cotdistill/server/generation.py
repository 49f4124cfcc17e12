"""Running a request's completions on an engine: fan-out, merge, limits, metrics.

A request asks for ``prompts x n`` completions (:class:`Job`). They are submitted together so
they share the engine's batch, and their step outputs are merged into one stream of
``(choice index, StepOutput)``. Closing that stream (client disconnect, timeout) cancels every
completion still running, which aborts it in the engine at its next step.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request

from cotdistill.common.errors import InvalidArgument
from cotdistill.server.engine.base import Engine, EngineClosed, SamplingParams, StepOutput, TokenLogprob
from cotdistill.server.errors import APIError, bad_request
from cotdistill.server.metrics import ServerMetrics
from cotdistill.server.settings import ServerSettings

T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    """One completion: choice ``index`` of prompt ``prompt_index``."""

    index: int
    prompt_index: int
    prompt_ids: list[int]
    params: SamplingParams


@dataclass
class Choice:
    """A finished completion, accumulated from its step outputs."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None

    def add(self, out: StepOutput) -> None:
        self.text += out.text
        self.token_ids += out.token_ids
        if out.logprobs:
            self.logprobs += out.logprobs
        if out.finish_reason is not None:
            self.finish_reason = out.finish_reason


@dataclass
class Trace:
    """Timestamps of one request (perf_counter seconds) for latency metrics and /v1/reason."""

    arrival: float = field(default_factory=time.perf_counter)
    admitted: float | None = None
    first_token: float | None = None
    finished: float | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])  # echoed as X-Request-Id
    # The engine's ids stay unique even when clients reuse an X-Request-Id.
    engine_id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])

    def ttft_s(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival

    def queue_s(self) -> float:
        return 0.0 if self.admitted is None else self.admitted - self.arrival


def validate_prompt(
    ids: Sequence[int], engine: Engine, settings: ServerSettings, max_tokens: int, field_name: str
) -> None:
    """400 unless the prompt fits: max_prompt_tokens, known token ids, room for max_tokens."""
    if not ids:
        raise bad_request(field_name, "is empty (no tokens)")
    if len(ids) > settings.max_prompt_tokens:
        raise bad_request(
            field_name,
            f"has {len(ids)} tokens; this server accepts at most {settings.max_prompt_tokens}",
            code="context_length_exceeded",
        )
    if any(not 0 <= t < engine.vocab_size for t in ids):
        raise bad_request(field_name, f"token ids must be in [0, {engine.vocab_size})")
    if len(ids) + max_tokens > engine.max_model_len:
        raise bad_request(
            "max_tokens",
            f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the model's context of "
            f"{engine.max_model_len} tokens",
            code="context_length_exceeded",
        )


def check_max_tokens(value: int, settings: ServerSettings, field_name: str = "max_tokens") -> int:
    if value > settings.max_tokens_cap:
        raise bad_request(field_name, f"must be <= {settings.max_tokens_cap} on this server, got {value}")
    return value


def check_model(requested: str, settings: ServerSettings) -> str | None:
    """The LoRA adapter ``requested`` names (None: the base model); 404 for any other id."""
    if requested == settings.served_model_name:
        return None
    adapters = settings.adapters()
    if requested in adapters:
        return requested
    served = ", ".join(repr(m) for m in [settings.served_model_name, *adapters])
    raise APIError(
        404,
        f"The model {requested!r} does not exist; this server serves {served}.",
        param="model",
        code="model_not_found",
    )


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client hangs up first, cancel it (its generation stops)."""

    async def hung_up() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(hung_up())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientDisconnected()
    return task.result()


class ClientDisconnected(Exception):
    """The client went away; nothing is sent back."""


def engine_error(exc: BaseException) -> APIError:
    """The HTTP error for an engine failure: 400 naming the field, 503 when closed, else 500."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, InvalidArgument):
        return bad_request(exc.field, str(exc).split(": ", 1)[-1])
    if isinstance(exc, EngineClosed):
        return APIError(503, "the model was shut down", "service_unavailable")
    return APIError(500, "generation failed", "server_error")


async def run_jobs(
    engine: Engine, jobs: Sequence[Job], trace: Trace, metrics: ServerMetrics
) -> AsyncGenerator[tuple[int, StepOutput], None]:
    """Generate every job at once; yield ``(choice index, step output)`` as they come.

    Closing the iterator cancels the jobs still running. Records TTFT, inter-token latency,
    generated tokens and finish reasons.
    """
    queue: asyncio.Queue[tuple[int, StepOutput | BaseException]] = asyncio.Queue()

    async def pump(job: Job) -> None:
        try:
            async for out in engine.generate(job.prompt_ids, job.params, f"{trace.engine_id}-{job.index}"):
                queue.put_nowait((job.index, out))
        except Exception as exc:
            queue.put_nowait((job.index, exc))

    tasks = [asyncio.create_task(pump(job)) for job in jobs]
    last_seen: dict[int, float] = {}
    remaining = len(jobs)
    try:
        while remaining:
            index, item = await queue.get()
            if isinstance(item, BaseException):
                raise engine_error(item) from item
            now = time.perf_counter()
            if item.token_ids:
                if trace.first_token is None:
                    trace.first_token = now
                    metrics.ttft.observe(now - trace.arrival)
                if index in last_seen:
                    metrics.inter_token.observe(now - last_seen[index])
                last_seen[index] = now
                metrics.generation_tokens.inc(len(item.token_ids))
            if item.finish_reason is not None:
                remaining -= 1
                metrics.request_success.labels(item.finish_reason).inc()
            yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def collect(engine: Engine, jobs: Sequence[Job], trace: Trace, metrics: ServerMetrics) -> list[Choice]:
    """Run the jobs to the end; choices in index order."""
    choices = {job.index: Choice(job.index) for job in jobs}
    stream = run_jobs(engine, jobs, trace, metrics)
    try:
        async for index, out in stream:
            choices[index].add(out)
    finally:
        await stream.aclose()
    return [choices[i] for i in sorted(choices)]

"""One request's life: lease the model, validate, wait for a slot, generate, answer or stream.

Shared by /v1/completions, /v1/chat/completions and /v1/reason so that limits, timeouts,
disconnects and metrics behave the same on every generating endpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cotdistill.server.admission import Admission
from cotdistill.server.auth import ApiKeys
from cotdistill.server.engine.base import Engine, StepOutput, TokenLogprob
from cotdistill.server.errors import APIError, error_body
from cotdistill.server.generation import (
    Choice,
    ClientDisconnected,
    Job,
    Trace,
    cancel_on_disconnect,
    collect,
    engine_error,
    run_jobs,
)
from cotdistill.server.metrics import ServerMetrics
from cotdistill.server.models import ModelHolder
from cotdistill.server.settings import ServerSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class AppContext:
    """Everything the routes need; lives on ``app.state.ctx``."""

    settings: ServerSettings
    holder: ModelHolder
    admission: Admission
    metrics: ServerMetrics
    api_keys: ApiKeys


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


class TimedOut(APIError):
    def __init__(self, seconds: float) -> None:
        super().__init__(504, f"The request did not finish within {seconds:g} s.", "timeout_error", code="timeout")


class SSEResponse(StreamingResponse):
    """Server-sent events; ``on_close`` runs however the stream ends (done, error, disconnect)."""

    def __init__(
        self, events: AsyncIterator[str], on_close: Callable[[], Any], headers: dict[str, str] | None = None
    ) -> None:
        headers = {"Cache-Control": "no-cache", **(headers or {})}
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # On a disconnect Starlette cancels the sending task but leaves the generator open:
            # close it now, which cancels the completions still generating for this client.
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            await self._on_close()


def sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"


@dataclass
class Plan:
    """What one request asks the engine for: completions, and prompts to score (echo + logprobs)."""

    jobs: list[Job]
    score_prompts: list[list[int]] = field(default_factory=list)
    score_k: int = 0
    adapter: str | None = None  # the LoRA adapter the prompts are scored with

    def units(self) -> int:
        """Admission units: one per completion, or per scored prompt when that is more."""
        return max(len(self.jobs), len(self.score_prompts), 1)


@dataclass
class Admitted:
    """A request holding a model lease and admission slots until ``close()``."""

    engine: Engine
    plan: Plan
    trace: Trace
    deadline: float
    stack: AsyncExitStack

    @property
    def jobs(self) -> list[Job]:
        return self.plan.jobs

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.perf_counter())

    async def close(self) -> None:
        await self.stack.aclose()


async def admit(ctx: AppContext, request: Request, make_jobs: Callable[[Engine], list[Job] | Plan]) -> Admitted:
    """Lease the model (503), build and validate the jobs (400), wait for slots (429, 504)."""
    trace = Trace(request_id=request_id(request))
    timeout_s = ctx.settings.request_timeout_s
    stack = AsyncExitStack()
    try:
        engine = await stack.enter_async_context(ctx.holder.lease())
        made = make_jobs(engine)
        plan = made if isinstance(made, Plan) else Plan(made)
        jobs = plan.jobs
        try:
            async with asyncio.timeout(timeout_s):
                await cancel_on_disconnect(request, stack.enter_async_context(ctx.admission.slot(plan.units())))
        except TimeoutError:
            ctx.metrics.rejected.labels("timeout").inc()
            raise TimedOut(timeout_s) from None
        except APIError as exc:
            if exc.status == 429:
                ctx.metrics.rejected.labels("overloaded").inc()
            raise
        trace.admitted = time.perf_counter()
        ctx.metrics.queue_time.observe(trace.queue_s())
        seen: set[int] = set()
        for job in jobs:
            if job.prompt_index not in seen:
                seen.add(job.prompt_index)
                ctx.metrics.prompt_tokens.inc(len(job.prompt_ids))
        if not jobs:
            ctx.metrics.prompt_tokens.inc(sum(len(p) for p in plan.score_prompts))
        return Admitted(engine, plan, trace, trace.arrival + timeout_s, stack)
    except BaseException as exc:
        await stack.aclose()
        if isinstance(exc, ClientDisconnected):
            ctx.metrics.rejected.labels("disconnected").inc()
        raise


def _finished(ctx: AppContext, trace: Trace) -> None:
    trace.finished = time.perf_counter()
    elapsed = trace.finished - trace.arrival
    ctx.metrics.e2e.observe(elapsed)
    ctx.admission.observe_latency(elapsed)


async def _bounded(ctx: AppContext, request: Request, admitted: Admitted, work: Awaitable[T]) -> T:
    """Await engine work within the request's deadline (504); cancel it if the client hangs up."""
    try:
        return await cancel_on_disconnect(request, asyncio.wait_for(work, admitted.remaining_s()))
    except TimeoutError:
        ctx.metrics.rejected.labels("timeout").inc()
        raise TimedOut(ctx.settings.request_timeout_s) from None
    except ClientDisconnected:
        ctx.metrics.rejected.labels("disconnected").inc()
        raise


async def _score(engine: Engine, plan: Plan) -> list[list[TokenLogprob]]:
    try:
        return await engine.score(plan.score_prompts, plan.score_k, plan.adapter)
    except (APIError, asyncio.CancelledError):
        raise
    except Exception as exc:
        raise engine_error(exc) from exc


async def score_prompts(ctx: AppContext, request: Request, admitted: Admitted) -> list[list[TokenLogprob]]:
    """Prompt logprobs of ``plan.score_prompts`` (empty when none); closes nothing."""
    if not admitted.plan.score_prompts:
        return []
    return await _bounded(ctx, request, admitted, _score(admitted.engine, admitted.plan))


async def score_and_run(
    ctx: AppContext, request: Request, admitted: Admitted
) -> tuple[list[list[TokenLogprob]], list[Choice]]:
    """Score the prompts that ask for it, then generate every choice; releases the request."""
    try:
        scored = await score_prompts(ctx, request, admitted)
        choices: list[Choice] = []
        if admitted.jobs:
            work = collect(admitted.engine, admitted.jobs, admitted.trace, ctx.metrics)
            choices = await _bounded(ctx, request, admitted, work)
        _finished(ctx, admitted.trace)
        return scored, choices
    finally:
        await admitted.close()


async def run_to_end(ctx: AppContext, request: Request, admitted: Admitted) -> list[Choice]:
    """Generate every choice; cancelled if the client disconnects or the deadline passes."""
    _, choices = await score_and_run(ctx, request, admitted)
    return choices


def stream_events(
    ctx: AppContext,
    admitted: Admitted,
    render: Callable[[int, StepOutput], list[dict[str, Any]]],
    final: Callable[[list[Choice]], list[dict[str, Any]]],
    prelude: list[dict[str, Any]] | None = None,
) -> SSEResponse:
    """An SSE response: ``prelude`` chunks first, ``render`` turns each step into chunks,
    ``final`` adds closing chunks."""

    async def events() -> AsyncIterator[str]:
        for chunk in prelude or []:
            yield sse(chunk)
        choices = {job.index: Choice(job.index) for job in admitted.jobs}
        stream = run_jobs(admitted.engine, admitted.jobs, admitted.trace, ctx.metrics)
        try:
            async with asyncio.timeout(admitted.remaining_s()):
                async for index, out in stream:
                    choices[index].add(out)
                    for chunk in render(index, out):
                        yield sse(chunk)
            for chunk in final([choices[i] for i in sorted(choices)]):
                yield sse(chunk)
            _finished(ctx, admitted.trace)
        except TimeoutError:
            ctx.metrics.rejected.labels("timeout").inc()
            err = TimedOut(ctx.settings.request_timeout_s)
            yield sse(error_body(err.message, err.kind, code=err.code))
        except APIError as exc:
            yield sse(error_body(exc.message, exc.kind, exc.param, exc.code))
        finally:
            await stream.aclose()
        yield sse("[DONE]")

    return SSEResponse(events(), on_close=admitted.close)


REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_SCOPE_KEY = "cotdistill.request_id"


def request_id(request: Request) -> str:
    """The client's ``X-Request-Id`` (echoed on every response by the middleware), or a new one."""
    found = request.scope.get(REQUEST_ID_SCOPE_KEY)
    return str(found) if found else uuid.uuid4().hex

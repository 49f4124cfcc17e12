"""OpenAI-compatible endpoints: /v1/models, /v1/completions, /v1/chat/completions."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from cotdistill.server.auth import Authenticated
from cotdistill.server.engine.base import Engine, SamplingParams, StepOutput, TokenLogprob
from cotdistill.server.errors import bad_request
from cotdistill.server.execution import AppContext, admit, context, run_to_end, stream_events
from cotdistill.server.generation import Choice, Job, check_max_tokens, check_model, validate_prompt
from cotdistill.server.models import NotReady
from cotdistill.server.protocol import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList, _Sampling

router = APIRouter(prefix="/v1", dependencies=[Authenticated], tags=["OpenAI-compatible"])


def _check_n(body: _Sampling, prompts: int, ctx: AppContext) -> None:
    if body.n > ctx.settings.max_n:
        raise bad_request("n", f"must be <= {ctx.settings.max_n} on this server, got {body.n}")
    if body.n * prompts > ctx.settings.max_concurrent:
        raise bad_request(
            "n", f"{prompts} prompt(s) x n={body.n} completions exceed this server's {ctx.settings.max_concurrent}"
        )


def _seed(body: _Sampling, index: int) -> int | None:
    # Each choice gets its own seed so n>1 choices differ, yet the request stays reproducible.
    return None if body.seed is None else (body.seed + index) % (2**63)


def _jobs(
    body: _Sampling, prompts: list[list[int]], max_tokens: int, logprobs: int | None, stop: tuple[str, ...]
) -> list[Job]:
    jobs = []
    for p, ids in enumerate(prompts):
        for j in range(body.n):
            index = p * body.n + j
            params = SamplingParams(
                max_tokens=max_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                stop=stop,
                seed=_seed(body, index),
                logprobs=logprobs,
            )
            jobs.append(Job(index, p, ids, params))
    return jobs


def _usage(jobs: list[Job], choices: list[Choice]) -> dict[str, int]:
    prompt = sum(len(ids) for ids in {j.prompt_index: j.prompt_ids for j in jobs}.values())
    completion = sum(len(c.token_ids) for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# ---- /v1/models ---------------------------------------------------------------------------------


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """The served model (one id, kept across checkpoint reloads)."""
    ctx = context(request)
    served = ctx.holder.current
    if served is None:
        raise NotReady(ctx.holder.load_error or "the model is still loading")
    card = ModelCard(
        id=ctx.settings.served_model_name,
        created=int(served.loaded_at),
        root=served.path,
        backend=served.engine.backend,
        max_model_len=served.engine.max_model_len,
    )
    return ModelList(data=[card])


# ---- /v1/completions ----------------------------------------------------------------------------


def _completion_logprobs(engine: Engine, entries: list[TokenLogprob], offset: int) -> dict[str, Any]:
    tokens = [engine.token_text(e.token_id) for e in entries]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [
            {engine.token_text(t): lp for t, lp in zip(e.top_ids, e.top_logprobs, strict=True)} for e in entries
        ],
        "text_offset": offsets,
    }


@router.post("/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Response:
    """OpenAI completions: text in, text out (optionally streamed as server-sent events)."""
    ctx = context(request)
    if body.best_of is not None and body.best_of != body.n:
        raise bad_request("best_of", "is only supported equal to n")
    check_model(body.model, ctx.settings)
    # OpenAI's default is 16; a server capped lower uses its cap rather than refusing the default.
    max_tokens = check_max_tokens(body.max_tokens or min(16, ctx.settings.max_tokens_cap), ctx.settings)
    raw = body.prompt
    if isinstance(raw, str):
        texts: list[str | list[int]] = [raw]
    elif raw and isinstance(raw[0], int):
        texts = [list(raw)]
    else:
        texts = list(raw)  # type: ignore[arg-type]
    _check_n(body, len(texts), ctx)
    stop = body.stop_strings()

    def make_jobs(engine: Engine) -> list[Job]:
        prompts = []
        for i, item in enumerate(texts):
            field = "prompt" if len(texts) == 1 else f"prompt[{i}]"
            ids = engine.tokenize(item) if isinstance(item, str) else list(item)
            if not ids and isinstance(item, str) and engine.eos_token_id is not None:
                ids = [engine.eos_token_id]  # an empty prompt: start from a document boundary
            validate_prompt(ids, engine, ctx.settings, max_tokens, field)
            prompts.append(ids)
        return _jobs(body, prompts, max_tokens, body.logprobs, stop)

    admitted = await admit(ctx, request, make_jobs)
    rid, created, engine = f"cmpl-{uuid.uuid4().hex}", int(time.time()), admitted.engine
    head = {"id": rid, "object": "text_completion", "created": created, "model": ctx.settings.served_model_name}

    if body.stream:
        offsets = {job.index: 0 for job in admitted.jobs}

        def render(index: int, out: StepOutput) -> list[dict[str, Any]]:
            logprobs = None
            if body.logprobs is not None and out.logprobs:
                logprobs = _completion_logprobs(engine, out.logprobs, offsets[index])
                offsets[index] += sum(len(t) for t in logprobs["tokens"])
            if not out.text and out.finish_reason is None and logprobs is None:
                return []
            choice = {"index": index, "text": out.text, "logprobs": logprobs, "finish_reason": out.finish_reason}
            return [{**head, "choices": [choice]}]

        def final(choices: list[Choice]) -> list[dict[str, Any]]:
            if body.stream_options and body.stream_options.include_usage:
                return [{**head, "choices": [], "usage": _usage(admitted.jobs, choices)}]
            return []

        return stream_events(ctx, admitted, render, final)

    choices = await run_to_end(ctx, request, admitted)
    return JSONResponse(
        {
            **head,
            "choices": [
                {
                    "index": c.index,
                    "text": c.text,
                    "logprobs": _completion_logprobs(engine, c.logprobs, 0) if body.logprobs is not None else None,
                    "finish_reason": c.finish_reason,
                }
                for c in choices
            ],
            "usage": _usage(admitted.jobs, choices),
        }
    )


# ---- /v1/chat/completions -----------------------------------------------------------------------


def _chat_prompt(engine: Engine, body: ChatCompletionRequest, ctx: AppContext) -> tuple[str, tuple[str, ...]]:
    """The prompt text and extra stop strings for a conversation.

    With a chat template (instruction-tuned checkpoints) the template renders the conversation.
    Without one (a Fine-tune-CoT student) the last user message becomes the question in the
    student's training format, and the format's stop strings apply.
    """
    from cotdistill.common.tasks import student_prompt, student_stop

    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    served = ctx.holder.current
    trained = served.training_format if served else ""
    template = getattr(engine.tokenizer, "chat_template", None)
    if template:
        try:
            text = engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # a template that rejects this conversation (roles, order)
            raise bad_request("messages", f"the model's chat template rejects them: {exc}") from exc
        # A checkpoint we trained renders the training format: its completions end where training's did.
        return str(text), tuple(student_stop(trained)) if trained else ()

    if body.messages[-1].role != "user":
        raise bad_request("messages", "the last message must be from the user (this model has no chat template)")
    question = body.messages[-1].text()
    fmt = ctx.settings.reason_format or trained or "ft_cot"
    return student_prompt(fmt, question), tuple(student_stop(fmt))


def _chat_logprobs(engine: Engine, entries: list[TokenLogprob]) -> dict[str, Any]:
    def item(token_id: int, logprob: float) -> dict[str, Any]:
        text = engine.token_text(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {
        "content": [
            {
                **item(e.token_id, e.logprob),
                "top_logprobs": [item(t, lp) for t, lp in zip(e.top_ids, e.top_logprobs, strict=True)],
            }
            for e in entries
        ]
    }


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """OpenAI chat completions (optionally streamed as server-sent events)."""
    ctx = context(request)
    if body.top_logprobs is not None and not body.logprobs:
        raise bad_request("top_logprobs", "needs logprobs=true")
    check_model(body.model, ctx.settings)
    requested = body.max_completion_tokens or body.max_tokens
    field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    if requested is not None:
        check_max_tokens(requested, ctx.settings, field)
    _check_n(body, 1, ctx)
    logprobs = (body.top_logprobs or 0) if body.logprobs else None

    def make_jobs(engine: Engine) -> list[Job]:
        text, format_stop = _chat_prompt(engine, body, ctx)
        ids = engine.tokenize(text)
        if not ids:
            raise bad_request("messages", "render to an empty prompt")
        max_tokens = requested or max(1, min(ctx.settings.max_tokens_cap, engine.max_model_len - len(ids)))
        validate_prompt(ids, engine, ctx.settings, max_tokens, "messages")
        return _jobs(body, [ids], max_tokens, logprobs, body.stop_strings() + format_stop)

    admitted = await admit(ctx, request, make_jobs)
    rid, created, engine = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), admitted.engine
    name = ctx.settings.served_model_name

    if body.stream:
        head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": name}
        started: set[int] = set()

        def render(index: int, out: StepOutput) -> list[dict[str, Any]]:
            chunks = []
            if index not in started:
                started.add(index)
                role = {
                    "index": index,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
                chunks.append({**head, "choices": [role]})
            lp = _chat_logprobs(engine, out.logprobs) if logprobs is not None and out.logprobs else None
            if out.text or lp is not None or out.finish_reason is not None:
                delta = {"content": out.text} if out.text else {}
                choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": out.finish_reason}
                chunks.append({**head, "choices": [choice]})
            return chunks

        def final(choices: list[Choice]) -> list[dict[str, Any]]:
            if body.stream_options and body.stream_options.include_usage:
                return [{**head, "choices": [], "usage": _usage(admitted.jobs, choices)}]
            return []

        return stream_events(ctx, admitted, render, final)

    choices = await run_to_end(ctx, request, admitted)
    return JSONResponse(
        {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": [
                {
                    "index": c.index,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": _chat_logprobs(engine, c.logprobs) if logprobs is not None else None,
                    "finish_reason": c.finish_reason,
                }
                for c in choices
            ],
            "usage": _usage(admitted.jobs, choices),
        }
    )

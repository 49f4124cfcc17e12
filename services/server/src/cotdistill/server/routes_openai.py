"""OpenAI-compatible endpoints: /v1/models, /v1/completions, /v1/chat/completions."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from cotdistill.common.lm import choice_seed
from cotdistill.common.token_strings import TokenStrings, token_strings
from cotdistill.server.auth import Authenticated
from cotdistill.server.engine.base import Engine, SamplingParams, StepOutput, TokenLogprob
from cotdistill.server.errors import bad_request
from cotdistill.server.execution import (
    Admitted,
    AppContext,
    Plan,
    admit,
    context,
    run_to_end,
    score_and_run,
    score_prompts,
    stream_events,
)
from cotdistill.server.generation import Choice, Job, check_max_tokens, check_model, validate_prompt
from cotdistill.server.models import NotReady
from cotdistill.server.openapi import GENERATION_RESPONSES, READ_RESPONSES
from cotdistill.server.protocol import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList, _Sampling

router = APIRouter(prefix="/v1", dependencies=[Authenticated], tags=["OpenAI-compatible"])


def _check_n(body: _Sampling, prompts: int, ctx: AppContext) -> None:
    if body.n > ctx.settings.max_n:
        raise bad_request("n", f"must be <= {ctx.settings.max_n} on this server, got {body.n}")
    if body.n * prompts > ctx.settings.max_concurrent:
        raise bad_request(
            "n", f"{prompts} prompt(s) x n={body.n} completions exceed this server's {ctx.settings.max_concurrent}"
        )


def _jobs(
    body: _Sampling,
    prompts: list[list[int]],
    max_tokens: int,
    logprobs: int | None,
    stop: tuple[str, ...],
    adapter: str | None = None,
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
                seed=choice_seed(body.seed, index),  # n>1 choices differ, the request reproduces
                logprobs=logprobs,
                adapter=adapter,
            )
            jobs.append(Job(index, p, ids, params))
    return jobs


def _usage(admitted: Admitted, choices: list[Choice]) -> dict[str, int]:
    by_prompt = {j.prompt_index: j.prompt_ids for j in admitted.jobs}
    prompt = sum(len(ids) for ids in by_prompt.values()) or sum(len(p) for p in admitted.plan.score_prompts)
    completion = sum(len(c.token_ids) for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# ---- /v1/models ---------------------------------------------------------------------------------


def _card(ctx: AppContext, adapter: str | None = None) -> ModelCard:
    """The base model's card, or an adapter's (``root`` its directory, ``parent`` the base id)."""
    served = ctx.holder.current
    if served is None:
        raise NotReady(ctx.holder.load_error or "the model is still loading")
    if adapter is not None:
        return ModelCard(
            id=adapter,
            created=int(served.loaded_at),
            root=ctx.settings.adapters()[adapter],
            parent=ctx.settings.served_model_name,
            backend=served.engine.backend,
            max_model_len=served.engine.max_model_len,
        )
    return ModelCard(
        id=ctx.settings.served_model_name,
        created=int(served.loaded_at),
        root=served.path,
        backend=served.engine.backend,
        max_model_len=served.engine.max_model_len,
    )


@router.get("/models", response_model=ModelList, responses=READ_RESPONSES)
async def list_models(request: Request) -> ModelList:
    """The served model (one id, kept across checkpoint reloads) and its LoRA adapters."""
    ctx = context(request)
    return ModelList(data=[_card(ctx), *(_card(ctx, name) for name in ctx.settings.adapters())])


@router.get("/models/{model_id:path}", response_model=ModelCard, responses=READ_RESPONSES)
async def retrieve_model(model_id: str, request: Request) -> ModelCard:
    """One model by id (``client.models.retrieve``); 404 for any other id."""
    ctx = context(request)
    return _card(ctx, check_model(model_id, ctx.settings))


# ---- /v1/completions ----------------------------------------------------------------------------


def fingerprint(engine: Engine) -> str:
    """``system_fingerprint``: changes when the backend or the checkpoint served changes."""
    return "fp_" + hashlib.sha256(f"{engine.backend}:{engine.model_path}".encode()).hexdigest()[:12]


@dataclass
class _Logprobs:
    """OpenAI completions logprobs, built token by token (whole responses and streams alike)."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


class _LogprobWriter:
    """Token strings and offsets that match the returned text (see cotdistill.common.token_strings)."""

    def __init__(self, strings: TokenStrings, context_ids: list[int], offset: int, as_ids: bool = False) -> None:
        self._strings = strings
        self._tracker = strings.tracker(context_ids)
        self.offset = offset
        self._as_ids = as_ids  # vLLM's return_tokens_as_token_ids: tokens written "token_id:N"

    def _name(self, token_id: int, text: str) -> str:
        return f"token_id:{token_id}" if self._as_ids else text

    def add(self, out: _Logprobs, token_id: int, entry: TokenLogprob | None, k: int) -> None:
        piece = self._tracker.add(token_id)
        out.tokens.append(self._name(token_id, piece.token))
        out.text_offset.append(self.offset)
        self.offset += len(piece.text)
        if entry is None:  # the first prompt token: nothing before it to condition on
            out.token_logprobs.append(None)
            out.top_logprobs.append(None)
            return
        out.token_logprobs.append(entry.logprob)
        top = {
            self._name(t, self._strings.standalone(t)): lp
            for t, lp in zip(entry.top_ids[:k], entry.top_logprobs[:k], strict=True)
        }
        top[self._name(token_id, piece.token)] = (
            entry.logprob
        )  # the chosen token is always listed (up to k + 1 entries)
        out.top_logprobs.append(top)


def _echo_logprobs(
    strings: TokenStrings, prompt_ids: list[int], scored: list[TokenLogprob], k: int, as_ids: bool
) -> _Logprobs:
    out = _Logprobs()
    writer = _LogprobWriter(strings, [], 0, as_ids)
    for i, token in enumerate(prompt_ids):
        writer.add(out, token, scored[i - 1] if i > 0 else None, k)
    return out


def _generated_logprobs(
    strings: TokenStrings,
    prompt_ids: list[int],
    entries: list[TokenLogprob],
    k: int,
    start: int,
    text_len: int,
    as_ids: bool,
) -> _Logprobs:
    out = _Logprobs()
    writer = _LogprobWriter(strings, prompt_ids, start, as_ids)
    for entry in entries:
        writer.add(out, entry.token_id, entry, k)
    # A stop string is not part of the text: when the tokens spell more than the text (it was cut
    # at a stop string), the tokens that start past its end are not listed either.
    end = start + text_len
    if writer.offset > end:
        keep = sum(1 for offset in out.text_offset if offset < end)
        return _Logprobs(out.tokens[:keep], out.token_logprobs[:keep], out.top_logprobs[:keep], out.text_offset[:keep])
    return out


def _merge(a: _Logprobs, b: _Logprobs) -> _Logprobs:
    return _Logprobs(
        a.tokens + b.tokens,
        a.token_logprobs + b.token_logprobs,
        a.top_logprobs + b.top_logprobs,
        a.text_offset + b.text_offset,
    )


@router.post("/completions", response_model=None, responses=GENERATION_RESPONSES)
async def completions(body: CompletionRequest, request: Request) -> Response:
    """OpenAI completions: text in, text out (optionally streamed as server-sent events).

    ``echo`` returns the prompt in front of the completion; with ``logprobs`` the prompt's tokens
    are scored too (first one null), and ``max_tokens: 0`` scores without generating (what
    lm-eval's loglikelihood tasks send). A list of prompts is scored in one batch.
    """
    ctx = context(request)
    if body.best_of is not None and body.best_of != body.n:
        raise bad_request("best_of", "is only supported equal to n")
    adapter = check_model(body.model, ctx.settings)
    if body.max_tokens == 0 and not body.echo:
        raise bad_request("max_tokens", "0 is only allowed with echo=true (scoring the prompt)")
    if body.max_tokens == 0 and body.stream:
        raise bad_request("stream", "is not supported with max_tokens=0 (nothing is generated)")
    # OpenAI's default is 16; a server capped lower uses its cap rather than refusing the default.
    max_tokens = body.max_tokens if body.max_tokens is not None else min(16, ctx.settings.max_tokens_cap)
    if max_tokens:
        check_max_tokens(max_tokens, ctx.settings)
    raw = body.prompt
    if isinstance(raw, str):
        texts: list[str | list[int]] = [raw]
    elif raw and isinstance(raw[0], int):
        texts = [list(raw)]
    else:
        texts = list(raw)  # type: ignore[arg-type]
    _check_n(body, len(texts), ctx)
    stop = body.stop_strings()
    score = body.echo and body.logprobs is not None
    prompts: list[list[int]] = []

    def make_plan(engine: Engine) -> Plan:
        if score and not getattr(engine, "scores_prompts", True):
            raise bad_request(
                "echo",
                "prompt logprobs (echo with logprobs) are not available on this server: vLLM's CPU backend "
                "cannot score prompts while LoRA adapters are enabled; score on a server without adapters",
            )
        for i, item in enumerate(texts):
            field_name = "prompt" if len(texts) == 1 else f"prompt[{i}]"
            ids = engine.tokenize(item) if isinstance(item, str) else list(item)
            if not ids and isinstance(item, str) and engine.eos_token_id is not None:
                ids = [engine.eos_token_id]  # an empty prompt: start from a document boundary
            validate_prompt(ids, engine, ctx.settings, max_tokens, field_name)
            prompts.append(ids)
        jobs = _jobs(body, prompts, max_tokens, body.logprobs, stop, adapter) if max_tokens else []
        return Plan(jobs, prompts if score else [], body.logprobs or 0, adapter)

    admitted = await admit(ctx, request, make_plan)
    rid, created, engine = f"cmpl-{uuid.uuid4().hex}", int(time.time()), admitted.engine
    strings = token_strings(engine.tokenizer)
    head = {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": body.model,  # the base id or the adapter asked for
        "system_fingerprint": fingerprint(engine),
    }
    k = body.logprobs or 0
    as_ids = body.return_tokens_as_token_ids

    def echo_text(p: int) -> str:
        item = texts[p]
        return item if isinstance(item, str) else strings.decode(item)

    def echo_part(p: int, scored: list[list[TokenLogprob]]) -> tuple[str, _Logprobs | None]:
        if not body.echo:
            return "", None
        lp = _echo_logprobs(strings, prompts[p], scored[p], k, as_ids) if score else None
        return echo_text(p), lp

    if body.stream:
        try:
            scored = await score_prompts(ctx, request, admitted)
        except BaseException:
            await admitted.close()
            raise
        writers: dict[int, _LogprobWriter] = {}
        prelude = []
        for job in admitted.jobs:
            text, lp = echo_part(job.prompt_index, scored)
            writers[job.index] = _LogprobWriter(strings, job.prompt_ids, len(text), as_ids)
            if body.echo:
                choice = {
                    "index": job.index,
                    "text": text,
                    "logprobs": lp.as_dict() if lp is not None else None,
                    "finish_reason": None,
                }
                prelude.append({**head, "choices": [choice]})

        def render(index: int, out: StepOutput) -> list[dict[str, Any]]:
            logprobs = None
            if body.logprobs is not None and out.logprobs:
                block = _Logprobs()
                for entry in out.logprobs:
                    writers[index].add(block, entry.token_id, entry, k)
                logprobs = block.as_dict()
            if not out.text and out.finish_reason is None and logprobs is None:
                return []
            choice = {"index": index, "text": out.text, "logprobs": logprobs, "finish_reason": out.finish_reason}
            return [{**head, "choices": [choice]}]

        def final(choices: list[Choice]) -> list[dict[str, Any]]:
            if body.stream_options and body.stream_options.include_usage:
                return [{**head, "choices": [], "usage": _usage(admitted, choices)}]
            return []

        return stream_events(ctx, admitted, render, final, prelude)

    scored, choices = await score_and_run(ctx, request, admitted)
    out_choices = []
    if not admitted.jobs:  # max_tokens=0: the echoed prompts, scored
        for p in range(len(prompts)):
            for j in range(body.n):
                text, lp = echo_part(p, scored)
                out_choices.append(
                    {
                        "index": p * body.n + j,
                        "text": text,
                        "logprobs": lp.as_dict() if lp is not None else None,
                        "finish_reason": "length",
                    }
                )
    for c in choices:
        job = admitted.jobs[c.index]
        text, lp = echo_part(job.prompt_index, scored)
        logprobs = None
        if body.logprobs is not None:
            generated = _generated_logprobs(strings, job.prompt_ids, c.logprobs, k, len(text), len(c.text), as_ids)
            logprobs = (_merge(lp, generated) if lp is not None else generated).as_dict()
        out_choices.append(
            {"index": c.index, "text": text + c.text, "logprobs": logprobs, "finish_reason": c.finish_reason}
        )
    return JSONResponse({**head, "choices": out_choices, "usage": _usage(admitted, choices)})


# ---- /v1/chat/completions -----------------------------------------------------------------------


def has_chat_template(engine: Engine) -> bool:
    return bool(getattr(engine.tokenizer, "chat_template", None))


def render_chat(
    engine: Engine, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True, continue_final: bool = False
) -> str:
    """The conversation rendered by the checkpoint's chat template (400 if the template refuses it)."""
    try:
        text = engine.tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final,
        )
    except Exception as exc:  # a template that rejects this conversation (roles, order)
        raise bad_request("messages", f"the model's chat template rejects them: {exc}") from exc
    return str(text)


def _chat_prompt(engine: Engine, body: ChatCompletionRequest, ctx: AppContext) -> tuple[list[int], tuple[str, ...]]:
    """The prompt ids and extra stop strings for a conversation.

    With a chat template the template renders every message (system, user, assistant turns).
    Without one (a Fine-tune-CoT student trained on ``{q} ###``) there is no way to render a
    conversation: one user message is served in the student's training format (its stop strings
    apply), and anything else is refused with 400 rather than silently dropped.
    """
    from cotdistill.common.tasks import student_prompt, student_stop

    served = ctx.holder.current
    trained = served.training_format if served else ""
    if has_chat_template(engine):
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        # The template writes its own special tokens (BOS): the tokenizer adds none on top. A
        # checkpoint we trained renders its training format, so its completions end where training's did.
        stops = tuple(student_stop(trained)) if trained else ()
        return engine.tokenize(render_chat(engine, messages), add_special_tokens=False), stops

    fmt = ctx.settings.reason_format or trained or "ft_cot"
    roles = [m.role for m in body.messages]
    if roles != ["user"]:
        raise bad_request(
            "messages",
            f"this checkpoint has no chat template, so it serves exactly one user message, put in its training "
            f"format {fmt!r}; got roles {roles}. Send one user message, use /v1/completions with your own prompt, "
            "or serve a checkpoint whose tokenizer has a chat template",
        )
    return engine.tokenize(student_prompt(fmt, body.messages[0].text())), tuple(student_stop(fmt))


def _chat_item(strings: TokenStrings, token_id: int, logprob: float, token: str | None = None) -> dict[str, Any]:
    text = strings.standalone(token_id) if token is None else token
    return {"token": text, "logprob": logprob, "bytes": list(strings.raw_bytes(token_id))}


class _ChatLogprobWriter:
    """Chat ``logprobs.content``: token strings as in the text, each token's own bytes."""

    def __init__(self, strings: TokenStrings, prompt_ids: list[int], k: int) -> None:
        self._strings = strings
        self._tracker = strings.tracker(prompt_ids)
        self._k = k

    def items(self, entries: list[TokenLogprob]) -> list[dict[str, Any]]:
        out = []
        for e in entries:
            piece = self._tracker.add(e.token_id)
            top = zip(e.top_ids[: self._k], e.top_logprobs[: self._k], strict=True)
            out.append(
                {
                    **_chat_item(self._strings, e.token_id, e.logprob, piece.token),
                    "top_logprobs": [_chat_item(self._strings, t, lp) for t, lp in top],
                }
            )
        return out


@router.post("/chat/completions", response_model=None, responses=GENERATION_RESPONSES)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """OpenAI chat completions (optionally streamed as server-sent events)."""
    ctx = context(request)
    refused = body.unsupported()
    if refused is not None:
        raise bad_request(*refused)
    if body.top_logprobs is not None and not body.logprobs:
        raise bad_request("top_logprobs", "needs logprobs=true")
    adapter = check_model(body.model, ctx.settings)
    requested = body.max_completion_tokens or body.max_tokens
    field_name = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    if requested is not None:
        check_max_tokens(requested, ctx.settings, field_name)
    _check_n(body, 1, ctx)
    logprobs = (body.top_logprobs or 0) if body.logprobs else None

    def make_jobs(engine: Engine) -> list[Job]:
        ids, format_stop = _chat_prompt(engine, body, ctx)
        if not ids:
            raise bad_request("messages", "render to an empty prompt")
        max_tokens = requested or max(1, min(ctx.settings.max_tokens_cap, engine.max_model_len - len(ids)))
        validate_prompt(ids, engine, ctx.settings, max_tokens, "messages")
        return _jobs(body, [ids], max_tokens, logprobs, body.stop_strings() + format_stop, adapter)

    admitted = await admit(ctx, request, make_jobs)
    rid, created, engine = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), admitted.engine
    strings = token_strings(engine.tokenizer)
    name = body.model  # the base id or the adapter asked for
    writers = {job.index: _ChatLogprobWriter(strings, job.prompt_ids, logprobs or 0) for job in admitted.jobs}

    if body.stream:
        head = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "system_fingerprint": fingerprint(engine),
        }
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
            lp = None
            if logprobs is not None and out.logprobs:
                lp = {"content": writers[index].items(out.logprobs)}
            if out.text or lp is not None or out.finish_reason is not None:
                delta = {"content": out.text} if out.text else {}
                choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": out.finish_reason}
                chunks.append({**head, "choices": [choice]})
            return chunks

        def final(choices: list[Choice]) -> list[dict[str, Any]]:
            if body.stream_options and body.stream_options.include_usage:
                return [{**head, "choices": [], "usage": _usage(admitted, choices)}]
            return []

        return stream_events(ctx, admitted, render, final)

    choices = await run_to_end(ctx, request, admitted)
    return JSONResponse(
        {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "system_fingerprint": fingerprint(engine),
            "choices": [
                {
                    "index": c.index,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": {"content": writers[c.index].items(c.logprobs)} if logprobs is not None else None,
                    "finish_reason": c.finish_reason,
                }
                for c in choices
            ],
            "usage": _usage(admitted, choices),
        }
    )

"""vLLM's tokenizer endpoints: /tokenize, /detokenize, /tokenizer_info.

lm-eval's ``local-completions`` looks for them (``tokenizer_backend=remote``, auto-detected) so it
can count context tokens for loglikelihood tasks without a ``tokenizer=`` argument or a model hub.
As in vLLM they live outside ``/v1`` and need no API key unless ``TOKENIZER_AUTH`` is set: they
reveal only the tokenizer, never run the model, and the body limit bounds their cost.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from cotdistill.server.auth import bearer, require_api_key
from cotdistill.server.engine.base import Engine
from cotdistill.server.engine.token_strings import token_strings
from cotdistill.server.errors import bad_request
from cotdistill.server.execution import context
from cotdistill.server.generation import check_model
from cotdistill.server.openapi import TOKENIZER_RESPONSES
from cotdistill.server.protocol import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse
from cotdistill.server.routes_openai import has_chat_template, render_chat


async def _maybe_authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    if context(request).settings.tokenizer_auth:
        await require_api_key(request, credentials)


router = APIRouter(dependencies=[Depends(_maybe_authenticated)], tags=["tokenizer (vLLM-compatible)"])


def _engine(request: Request, model: str | None) -> Engine:
    ctx = context(request)
    if model is not None:
        check_model(model, ctx.settings)
    served = ctx.holder.current
    if served is None:
        from cotdistill.server.models import NotReady

        raise NotReady(ctx.holder.load_error or "the model is still loading")
    return served.engine


@router.post("/tokenize", response_model=TokenizeResponse, responses=TOKENIZER_RESPONSES)
async def tokenize(body: TokenizeRequest, request: Request) -> TokenizeResponse:
    """Text (``prompt``) or a conversation (``messages``, through the chat template) -> token ids."""
    engine = _engine(request, body.model)
    if (body.prompt is None) == (body.messages is None):
        raise bad_request("prompt", "give exactly one of `prompt` and `messages`")
    if body.messages is not None:
        if not has_chat_template(engine):
            raise bad_request("messages", "this checkpoint has no chat template; tokenize a `prompt` instead")
        if body.continue_final_message and body.add_generation_prompt:
            raise bad_request("continue_final_message", "cannot be combined with add_generation_prompt=true")
        text = render_chat(
            engine,
            [{"role": m.role, "content": m.text()} for m in body.messages],
            add_generation_prompt=body.add_generation_prompt,
            continue_final=body.continue_final_message,
        )
        ids = engine.tokenize(text, add_special_tokens=bool(body.add_special_tokens))
    else:
        add = True if body.add_special_tokens is None else body.add_special_tokens
        ids = engine.tokenize(body.prompt or "", add_special_tokens=add)
    strs = None
    if body.return_token_strs:
        strings = token_strings(engine.tokenizer)
        strs = [strings.standalone(t) for t in ids]
    return TokenizeResponse(count=len(ids), max_model_len=engine.max_model_len, tokens=ids, token_strs=strs)


@router.post("/detokenize", response_model=DetokenizeResponse, responses=TOKENIZER_RESPONSES)
async def detokenize(body: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    """Token ids -> text (special tokens kept, as vLLM's /detokenize)."""
    engine = _engine(request, body.model)
    bad = [t for t in body.tokens if not 0 <= t < engine.vocab_size]
    if bad:
        raise bad_request("tokens", f"token ids must be in [0, {engine.vocab_size}), got {bad[0]}")
    text = engine.tokenizer.decode(body.tokens, clean_up_tokenization_spaces=False)
    return DetokenizeResponse(prompt=str(text))


@router.get("/tokenizer_info", responses=TOKENIZER_RESPONSES)
async def tokenizer_info(request: Request) -> dict[str, Any]:
    """The tokenizer's configuration (special tokens, chat template), as vLLM's /tokenizer_info."""
    engine = _engine(request, None)
    tok = engine.tokenizer
    info: dict[str, Any] = {}
    for key, value in (getattr(tok, "init_kwargs", None) or {}).items():
        if key in ("vocab_file", "merges_file", "tokenizer_file", "name_or_path") or key.startswith("_"):
            continue
        info[key] = _jsonable(value)
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        info[key] = getattr(tok, key, None)
    info["tokenizer_class"] = type(tok).__name__
    info["chat_template"] = getattr(tok, "chat_template", None)
    info["model_max_length"] = engine.max_model_len
    info["vocab_size"] = engine.vocab_size
    return info


def _jsonable(value: Any) -> Any:
    if hasattr(value, "content"):  # AddedToken
        return value.content
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)

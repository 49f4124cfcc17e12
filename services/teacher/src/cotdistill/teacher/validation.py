"""Check Sample and Score requests; every error names the offending field (INVALID_ARGUMENT).

Field names follow the proto paths (``params.top_k_logprobs``, ``prompts[3].text``) so a caller
can find the value without reading server code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from cotdistill.common import enums
from cotdistill.common.errors import InvalidArgument
from cotdistill.teacher.engine import EngineInfo, LogprobMode, SamplingOptions
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.v1 import common_pb2, teacher_pb2

MAX_N = 1024
MAX_TEMPERATURE = 10.0
MAX_STOP = 16
MAX_ANSWER_TOKENS = 256
DEFAULT_ANSWER_TOKENS = 32

_MODES = enums.names(common_pb2.LogprobMode)


@dataclass(frozen=True, slots=True)
class TwoStageOptions:
    """Zero-shot-CoT's answer stage: ``trigger`` is appended after prompt + rationale."""

    trigger: str
    max_tokens: int


def sampling_options(
    params: teacher_pb2.SamplingParams, info: EngineInfo, settings: TeacherSettings
) -> SamplingOptions:
    """Validate ``params`` against the engine's limits; returns options with defaults filled in."""
    n = params.n or 1
    if n > MAX_N:
        raise InvalidArgument("params.n", f"must be between 1 and {MAX_N}, got {n}")
    temperature = float(params.temperature)
    if not math.isfinite(temperature) or not 0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidArgument("params.temperature", f"must be in [0, {MAX_TEMPERATURE:g}], got {temperature}")
    if temperature == 0 and n > 1:
        raise InvalidArgument("params.n", f"must be 1 with temperature 0 (greedy samples are identical), got {n}")
    top_p = float(params.top_p) if params.HasField("top_p") else 1.0
    if not math.isfinite(top_p) or not 0 < top_p <= 1:
        raise InvalidArgument("params.top_p", f"must be in (0, 1], got {top_p}")
    max_tokens = params.max_tokens or settings.default_max_tokens
    max_tokens = min(max_tokens, info.context_length) if not params.max_tokens else max_tokens
    if max_tokens > info.context_length:
        raise InvalidArgument(
            "params.max_tokens", f"must be at most the context length {info.context_length}, got {max_tokens}"
        )
    if len(params.stop) > MAX_STOP:
        raise InvalidArgument("params.stop", f"at most {MAX_STOP} stop strings, got {len(params.stop)}")
    for i, stop in enumerate(params.stop):
        if not stop:
            raise InvalidArgument(f"params.stop[{i}]", "must not be empty")
    max_k = min(info.max_top_k, settings.max_top_k)
    if params.top_k_logprobs > max_k:
        raise InvalidArgument(
            "params.top_k_logprobs", f"must be at most {max_k} on this replica, got {params.top_k_logprobs}"
        )
    if params.logprob_mode and params.logprob_mode not in _MODES.by_value:
        raise InvalidArgument("params.logprob_mode", f"unknown mode {params.logprob_mode}")
    mode = cast(LogprobMode, _MODES.name(params.logprob_mode, "raw"))
    if mode not in info.logprob_modes:
        raise InvalidArgument(
            "params.logprob_mode",
            f"the {info.backend} backend of this replica returns {'/'.join(info.logprob_modes)} logprobs only",
        )
    return SamplingOptions(
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        stop=tuple(params.stop),
        seed=params.seed if params.HasField("seed") else None,
        top_k_logprobs=params.top_k_logprobs,
        logprob_mode=mode,
    )


def check_prompt_count(count: int, field: str, settings: TeacherSettings) -> None:
    if count == 0:
        raise InvalidArgument(field, "at least one is required")
    if count > settings.max_prompts:
        raise InvalidArgument(field, f"at most {settings.max_prompts} per request, got {count}")


def check_sample_budget(prompts: int, n: int, settings: TeacherSettings) -> None:
    if prompts * n > settings.max_samples_per_request:
        raise InvalidArgument(
            "params.n",
            f"{prompts} prompts x n={n} is more than {settings.max_samples_per_request} samples per request; "
            "split the request",
        )


def literal_prompt(prompt: teacher_pb2.Prompt, index: int) -> str | None:
    """The literal text of a prompt, or None when it names a record id or a chat; checks it is set."""
    source = prompt.WhichOneof("source")
    if source is None:
        raise InvalidArgument(f"prompts[{index}]", "set text, record_id or chat")
    if source == "chat":
        return None
    if source == "text":
        if not prompt.text:
            raise InvalidArgument(f"prompts[{index}].text", "must not be empty")
        return prompt.text
    if not prompt.record_id:
        raise InvalidArgument(f"prompts[{index}].record_id", "must not be empty")
    return None


def check_prompt_lengths(
    prompt_ids: Sequence[Sequence[int] | None], context_length: int, fields: Sequence[str] | None = None
) -> None:
    """A prompt must leave room for at least one generated token.

    ``fields[i]`` names prompt i in errors (default ``prompts[i].text``).
    """
    for i, ids in enumerate(prompt_ids):
        if ids is None:
            continue
        field = fields[i] if fields is not None else f"prompts[{i}].text"
        if len(ids) == 0:
            raise InvalidArgument(field, "tokenizes to zero tokens")
        if len(ids) >= context_length:
            raise InvalidArgument(
                field,
                f"is {len(ids)} tokens, longer than the context length {context_length} allows "
                "(it must leave room for at least one generated token)",
            )


def two_stage_options(request: teacher_pb2.SampleRequest, dataset_trigger: str | None) -> TwoStageOptions | None:
    if not request.HasField("two_stage"):
        return None
    stage = request.two_stage
    max_tokens = stage.answer_max_tokens or DEFAULT_ANSWER_TOKENS
    if max_tokens > MAX_ANSWER_TOKENS:
        raise InvalidArgument(
            "two_stage.answer_max_tokens", f"must be between 1 and {MAX_ANSWER_TOKENS}, got {max_tokens}"
        )
    trigger = stage.answer_trigger
    if not trigger:
        if not request.dataset:
            raise InvalidArgument(
                "two_stage.answer_trigger", "is empty and no dataset is named to take the trigger from"
            )
        trigger = dataset_trigger or ""
        if not trigger:
            raise InvalidArgument("two_stage.answer_trigger", f"dataset {request.dataset!r} defines no trigger")
    return TwoStageOptions(trigger, max_tokens)


def check_score_request(request: teacher_pb2.ScoreRequest, info: EngineInfo, settings: TeacherSettings) -> None:
    check_prompt_count(len(request.items), "items", settings)
    max_k = min(info.max_top_k, settings.max_top_k)
    if request.top_k_logprobs > max_k:
        raise InvalidArgument(
            "top_k_logprobs", f"must be at most {max_k} on this replica, got {request.top_k_logprobs}"
        )
    has_bos = info.tokenizer is not None and info.tokenizer.bos_token_id is not None
    vocab = info.tokenizer.vocab_size if info.tokenizer is not None else 0
    for i, item in enumerate(request.items):
        chat = item.HasField("chat")
        if chat and item.prompt:
            raise InvalidArgument(f"items[{i}].prompt", "must be empty when chat is set")
        if item.completion_ids:
            if item.completion:
                raise InvalidArgument(f"items[{i}].completion", "must be empty when completion_ids is set")
            check_token_ids(item.completion_ids, vocab, f"items[{i}].completion_ids")
        elif not item.completion:
            raise InvalidArgument(f"items[{i}].completion", "must not be empty")
        if not item.prompt and not chat and not has_bos:
            raise InvalidArgument(f"items[{i}].prompt", "may be empty only when the model has a BOS token")
        check_candidates(item, i, info, max_k)


def check_token_ids(ids: Sequence[int], vocab_size: int, field: str, *, allow_pad: bool = False) -> None:
    """Every id in [0, vocab_size) (or -1 with ``allow_pad``); ``vocab_size`` 0 means unknown."""
    lo = -1 if allow_pad else 0
    bad = next((t for t in ids if t < lo or (vocab_size and t >= vocab_size)), None)
    if bad is not None:
        raise InvalidArgument(field, f"token id {bad} is outside [{lo}, {vocab_size or 'vocab size'})")


def check_candidates(item: teacher_pb2.ScoreItem, i: int, info: EngineInfo, max_k: int) -> None:
    """ScoreItem.candidate_ids: on a replica that scores them, with completion_ids, T*m entries."""
    m = item.candidates_per_token
    if not item.candidate_ids and not m:
        return
    field = f"items[{i}].candidate_ids"
    if not info.scores_candidates:
        raise InvalidArgument(
            field,
            f"the {info.backend} backend of this replica cannot score given ids "
            "(Info.scores_candidates is false; vLLM needs its V2 model runner)",
        )
    if m == 0 or m > max_k:
        raise InvalidArgument(f"items[{i}].candidates_per_token", f"must be between 1 and {max_k}, got {m}")
    if not item.completion_ids:
        raise InvalidArgument(field, "needs completion_ids (candidates are given per completion token)")
    if len(item.candidate_ids) != len(item.completion_ids) * m:
        raise InvalidArgument(
            field,
            f"needs len(completion_ids) * candidates_per_token = {len(item.completion_ids)}*{m} entries, "
            f"got {len(item.candidate_ids)}",
        )
    check_token_ids(item.candidate_ids, info.tokenizer.vocab_size if info.tokenizer else 0, field, allow_pad=True)


def check_score_lengths(
    prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], context_length: int
) -> None:
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        if not c:
            raise InvalidArgument(f"items[{i}].completion", "tokenizes to zero tokens")
        total = max(len(p), 1) + len(c)
        if total > context_length:
            raise InvalidArgument(
                f"items[{i}].completion",
                f"prompt + completion are {total} tokens, more than the context length {context_length}",
            )


MAX_CHAT_MESSAGES = 64
MAX_SYSTEM_PROMPT_CHARS = 4096
_ROLES = ("system", "user", "assistant")


def chat_prompt(chat: teacher_pb2.ChatPrompt, field: str) -> tuple[list[dict[str, str]], str]:
    """(messages as dicts, assistant prefix) of a ChatPrompt; errors name the message."""
    if not chat.messages:
        raise InvalidArgument(f"{field}.messages", "at least one message is required")
    if len(chat.messages) > MAX_CHAT_MESSAGES:
        raise InvalidArgument(f"{field}.messages", f"at most {MAX_CHAT_MESSAGES} messages, got {len(chat.messages)}")
    out = []
    for j, m in enumerate(chat.messages):
        if m.role not in _ROLES:
            raise InvalidArgument(f"{field}.messages[{j}].role", f"must be one of {', '.join(_ROLES)}, not {m.role!r}")
        if not m.content:
            raise InvalidArgument(f"{field}.messages[{j}].content", "must not be empty")
        out.append({"role": m.role, "content": m.content})
    if out[-1]["role"] != "user":
        raise InvalidArgument(f"{field}.messages", "the last message must be a user turn (use assistant_prefix)")
    return out, chat.assistant_prefix


def use_chat_template(mode: int, teacher_has_template: bool) -> bool:
    """Whether record_id prompts go through the chat template under ``prompt_template``."""
    if mode == teacher_pb2.PROMPT_TEMPLATE_RAW:
        return False
    if mode == teacher_pb2.PROMPT_TEMPLATE_CHAT:
        if not teacher_has_template:
            raise InvalidArgument("prompt_template", "CHAT needs a teacher whose tokenizer has a chat template")
        return True
    return teacher_has_template


def system_prompt(text: str) -> str | None:
    if len(text) > MAX_SYSTEM_PROMPT_CHARS:
        raise InvalidArgument("system_prompt", f"at most {MAX_SYSTEM_PROMPT_CHARS} characters, got {len(text)}")
    return text or None

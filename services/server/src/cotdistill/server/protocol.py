"""Request and response schemas: OpenAI's completions/chat (the subset we serve) and /v1/reason.

Field names, defaults and ranges follow the OpenAI API reference, so the ``openai`` client and
tools built on it work unchanged. Unknown fields are ignored (as vLLM does); fields we know but
do not support are refused with a 400 naming them, never silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from cotdistill.server.engine.base import MAX_TOP_LOGPROBS

MAX_STOP_STRINGS = 16


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(BaseModel):
    include_usage: bool = Field(False, description="Send a last chunk with `usage` and no choices.")


class _Sampling(_Request):
    """Fields shared by completions and chat completions."""

    model: str = Field(description="The served model id (GET /v1/models).")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 is greedy; higher is more random.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling probability mass.")
    n: int = Field(1, ge=1, le=64, description="Completions per prompt (capped by the server's max_n).")
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_STRINGS)] | None = Field(
        None, description="Up to 16 strings that end a completion; not included in the text."
    )
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="Same seed, same completion.")
    stream: bool = Field(False, description="Stream server-sent events `data: {...}`, ending `data: [DONE]`.")
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(0.0, ge=0.0, le=0.0, description="Not supported: only 0.")
    frequency_penalty: float = Field(0.0, ge=0.0, le=0.0, description="Not supported: only 0.")
    logit_bias: dict[str, float] | None = Field(None, max_length=0, description="Not supported: only empty.")
    user: str | None = Field(None, description="Ignored (end-user id).")

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(_Sampling):
    """POST /v1/completions."""

    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[StrictInt], Field(min_length=1)]
        | Annotated[list[Annotated[list[StrictInt], Field(min_length=1)]], Field(min_length=1)]
    ) = Field(description="Text, texts, token ids, or lists of token ids.")
    max_tokens: int | None = Field(
        None, ge=0, description="Tokens to generate at most (default 16); 0 with echo scores the prompt only."
    )
    logprobs: int | None = Field(
        None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="Return each token's logprob and the top-k candidates (the chosen token is added: "
        "up to k+1 entries); with echo, the prompt's tokens too (the first one null).",
    )
    echo: bool = Field(False, description="Return the prompt in front of the completion (with its logprobs).")
    best_of: int | None = Field(None, ge=1, description="Only equal to n (or absent).")
    suffix: Annotated[str, Field(max_length=0)] | None = Field(None, description="Not supported: only empty.")


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")  # json_schema carries its own fields

    type: Literal["text", "json_object", "json_schema"]


class ChatCompletionRequest(_Sampling):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    max_tokens: int | None = Field(None, ge=1, description="Deprecated alias of max_completion_tokens.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Tokens to generate at most.")
    logprobs: bool = Field(False, description="Return logprobs of the generated tokens.")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description="Top-k per token (needs logprobs).")
    response_format: ResponseFormat | None = Field(
        None, description="Only `text` (the default); `json_object` and `json_schema` are refused with 400."
    )
    tools: list[dict[str, Any]] | None = Field(None, description="Not supported: refused with 400 unless empty.")
    tool_choice: str | dict[str, Any] | None = Field(None, description="Only `none` (no tools are supported).")
    parallel_tool_calls: bool | None = Field(None, description="Accepted; no effect (no tools).")
    functions: list[dict[str, Any]] | None = Field(None, description="Deprecated tools: refused unless empty.")
    function_call: str | dict[str, Any] | None = Field(None, description="Only `none` (no functions).")
    modalities: list[str] | None = Field(None, description='Only ["text"].')
    audio: dict[str, Any] | None = Field(None, description="Not supported: refused.")
    prediction: dict[str, Any] | None = Field(None, description="Not supported: refused.")
    reasoning_effort: str | None = Field(None, description="Not supported: refused.")
    verbosity: str | None = Field(None, description="Not supported: refused.")
    web_search_options: dict[str, Any] | None = Field(None, description="Not supported: refused.")
    store: bool | None = Field(None, description="Accepted; nothing is stored.")
    metadata: dict[str, str] | None = Field(None, description="Accepted; no effect.")
    service_tier: str | None = Field(None, description="Accepted; no effect.")
    safety_identifier: str | None = Field(None, description="Accepted; no effect.")
    prompt_cache_key: str | None = Field(None, description="Accepted; no effect.")

    def unsupported(self) -> tuple[str, str] | None:
        """The first field this server refuses, as (field, why); None when all are served."""
        if self.response_format is not None and self.response_format.type != "text":
            return (
                "response_format",
                f"type {self.response_format.type!r} is not supported by this server (no constrained decoding); "
                "only 'text'",
            )
        if self.tools:
            return "tools", "tool calling is not supported by this server; send no tools"
        if self.tool_choice not in (None, "none"):
            return "tool_choice", "only 'none' is supported (no tools)"
        if self.functions:
            return "functions", "function calling is not supported by this server"
        if self.function_call not in (None, "none"):
            return "function_call", "only 'none' is supported (no functions)"
        if self.modalities is not None and self.modalities != ["text"]:
            return "modalities", "only ['text'] is supported"
        for name in ("audio", "prediction", "reasoning_effort", "verbosity", "web_search_options"):
            if getattr(self, name) is not None:
                return name, "is not supported by this server"
        return None


class ReasonRequest(_Request):
    """POST /v1/reason: a question in, the student's rationale and answer out."""

    question: str = Field(min_length=1, max_length=20_000, description="The question to reason about.")
    format: str | None = Field(
        None, description="Student format it was trained on (e.g. ft_cot); default: the server's reason_format."
    )
    dataset: str | None = Field(
        None,
        description="Dataset name or answer type (number, choice, yes_no, text) to normalize the answer; "
        "also picks in-context exemplars of the fu_ic_* formats.",
    )
    max_tokens: int | None = Field(None, ge=1, description="Tokens to generate at most (default: server cap).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 (default) is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Latency(BaseModel):
    total_s: float = Field(description="Arrival to answer, seconds.")
    time_to_first_token_s: float | None = Field(description="Arrival to the first generated token, seconds.")
    queue_s: float = Field(description="Time waiting for a free slot, seconds.")


class ReasonResponse(BaseModel):
    rationale: str
    answer: str | None = Field(description="The extracted (normalized when `dataset` is given) answer, or null.")
    raw_answer: str | None = Field(description="The answer slot's text as generated.")
    text: str = Field(description="The whole generated completion.")
    format: str
    model: str
    finish_reason: str
    usage: Usage
    latency: Latency


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "cotdistill"
    root: str = Field(description="Checkpoint path being served.")
    parent: str | None = None
    backend: str
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ReloadRequest(_Request):
    model: str | None = Field(None, description="Checkpoint directory to load; default: the configured one.")


class ReloadResponse(BaseModel):
    model: str
    backend: str
    loaded_in_s: float


# ---- vLLM's tokenizer endpoints (/tokenize, /detokenize, /tokenizer_info) ----------------------


class TokenizeRequest(_Request):
    """POST /tokenize: a text (``prompt``) or a conversation (``messages``, rendered by the chat template)."""

    model: str | None = Field(None, description="The served model id (optional).")
    prompt: str | None = Field(None, description="Text to tokenize (or give `messages`).")
    messages: list[ChatMessage] | None = Field(None, min_length=1, description="A conversation to render and tokenize.")
    add_special_tokens: bool | None = Field(
        None, description="Add the tokenizer's special tokens (BOS); default true for `prompt`, false for `messages`."
    )
    add_generation_prompt: bool = Field(True, description="`messages`: end with the assistant turn's opening.")
    continue_final_message: bool = Field(False, description="`messages`: leave the last message open.")
    return_token_strs: bool = Field(False, description="Also return each token's string.")


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(_Request):
    model: str | None = Field(None, description="The served model id (optional).")
    tokens: list[StrictInt] = Field(description="Token ids to turn back into text.")


class DetokenizeResponse(BaseModel):
    prompt: str

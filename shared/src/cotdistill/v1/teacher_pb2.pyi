from cotdistill.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PromptTemplate(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROMPT_TEMPLATE_UNSPECIFIED: _ClassVar[PromptTemplate]
    PROMPT_TEMPLATE_AUTO: _ClassVar[PromptTemplate]
    PROMPT_TEMPLATE_CHAT: _ClassVar[PromptTemplate]
    PROMPT_TEMPLATE_RAW: _ClassVar[PromptTemplate]
PROMPT_TEMPLATE_UNSPECIFIED: PromptTemplate
PROMPT_TEMPLATE_AUTO: PromptTemplate
PROMPT_TEMPLATE_CHAT: PromptTemplate
PROMPT_TEMPLATE_RAW: PromptTemplate

class SamplingParams(_message.Message):
    __slots__ = ("n", "temperature", "top_p", "max_tokens", "stop", "seed", "top_k_logprobs", "logprob_mode")
    N_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TOP_K_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_MODE_FIELD_NUMBER: _ClassVar[int]
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    top_k_logprobs: int
    logprob_mode: _common_pb2.LogprobMode
    def __init__(self, n: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_tokens: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., top_k_logprobs: _Optional[int] = ..., logprob_mode: _Optional[_Union[_common_pb2.LogprobMode, str]] = ...) -> None: ...

class TwoStage(_message.Message):
    __slots__ = ("answer_trigger", "answer_max_tokens")
    ANSWER_TRIGGER_FIELD_NUMBER: _ClassVar[int]
    ANSWER_MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    answer_trigger: str
    answer_max_tokens: int
    def __init__(self, answer_trigger: _Optional[str] = ..., answer_max_tokens: _Optional[int] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class ChatPrompt(_message.Message):
    __slots__ = ("messages", "assistant_prefix")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    ASSISTANT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    assistant_prefix: str
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., assistant_prefix: _Optional[str] = ...) -> None: ...

class Prompt(_message.Message):
    __slots__ = ("id", "text", "record_id", "chat")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    record_id: str
    chat: ChatPrompt
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., record_id: _Optional[str] = ..., chat: _Optional[_Union[ChatPrompt, _Mapping]] = ...) -> None: ...

class SampleRequest(_message.Message):
    __slots__ = ("prompts", "params", "dataset", "split", "prompt_format", "two_stage", "request_id", "prompt_template", "system_prompt")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TWO_STAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedCompositeFieldContainer[Prompt]
    params: SamplingParams
    dataset: str
    split: str
    prompt_format: str
    two_stage: TwoStage
    request_id: str
    prompt_template: PromptTemplate
    system_prompt: str
    def __init__(self, prompts: _Optional[_Iterable[_Union[Prompt, _Mapping]]] = ..., params: _Optional[_Union[SamplingParams, _Mapping]] = ..., dataset: _Optional[str] = ..., split: _Optional[str] = ..., prompt_format: _Optional[str] = ..., two_stage: _Optional[_Union[TwoStage, _Mapping]] = ..., request_id: _Optional[str] = ..., prompt_template: _Optional[_Union[PromptTemplate, str]] = ..., system_prompt: _Optional[str] = ...) -> None: ...

class SampleResponse(_message.Message):
    __slots__ = ("prompt_index", "prompt_id", "sample_index", "text", "logprobs", "finish_reason", "usage", "answer_text", "extracted_answer", "prompt_text")
    PROMPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ANSWER_TEXT_FIELD_NUMBER: _ClassVar[int]
    EXTRACTED_ANSWER_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    prompt_index: int
    prompt_id: str
    sample_index: int
    text: str
    logprobs: _common_pb2.TokenLogprobs
    finish_reason: _common_pb2.FinishReason
    usage: _common_pb2.Usage
    answer_text: str
    extracted_answer: str
    prompt_text: str
    def __init__(self, prompt_index: _Optional[int] = ..., prompt_id: _Optional[str] = ..., sample_index: _Optional[int] = ..., text: _Optional[str] = ..., logprobs: _Optional[_Union[_common_pb2.TokenLogprobs, _Mapping]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., answer_text: _Optional[str] = ..., extracted_answer: _Optional[str] = ..., prompt_text: _Optional[str] = ...) -> None: ...

class ScoreItem(_message.Message):
    __slots__ = ("prompt", "completion", "id", "chat", "prompt_rendered", "completion_ids", "candidate_ids", "candidates_per_token")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_RENDERED_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_IDS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_IDS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    completion: str
    id: str
    chat: ChatPrompt
    prompt_rendered: bool
    completion_ids: _containers.RepeatedScalarFieldContainer[int]
    candidate_ids: _containers.RepeatedScalarFieldContainer[int]
    candidates_per_token: int
    def __init__(self, prompt: _Optional[str] = ..., completion: _Optional[str] = ..., id: _Optional[str] = ..., chat: _Optional[_Union[ChatPrompt, _Mapping]] = ..., prompt_rendered: _Optional[bool] = ..., completion_ids: _Optional[_Iterable[int]] = ..., candidate_ids: _Optional[_Iterable[int]] = ..., candidates_per_token: _Optional[int] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("items", "top_k_logprobs")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoreItem]
    top_k_logprobs: int
    def __init__(self, items: _Optional[_Iterable[_Union[ScoreItem, _Mapping]]] = ..., top_k_logprobs: _Optional[int] = ...) -> None: ...

class ScoredCompletion(_message.Message):
    __slots__ = ("id", "logprobs", "prompt_tokens", "prompt_text", "candidate_logprobs")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    id: str
    logprobs: _common_pb2.TokenLogprobs
    prompt_tokens: int
    prompt_text: str
    candidate_logprobs: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, id: _Optional[str] = ..., logprobs: _Optional[_Union[_common_pb2.TokenLogprobs, _Mapping]] = ..., prompt_tokens: _Optional[int] = ..., prompt_text: _Optional[str] = ..., candidate_logprobs: _Optional[_Iterable[float]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("completions",)
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    completions: _containers.RepeatedCompositeFieldContainer[ScoredCompletion]
    def __init__(self, completions: _Optional[_Iterable[_Union[ScoredCompletion, _Mapping]]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("model_id", "backend", "tokenizer", "max_top_k", "context_length", "max_in_flight", "version", "scores_candidates")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    MAX_TOP_K_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORES_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    backend: str
    tokenizer: _common_pb2.TokenizerInfo
    max_top_k: int
    context_length: int
    max_in_flight: int
    version: str
    scores_candidates: bool
    def __init__(self, model_id: _Optional[str] = ..., backend: _Optional[str] = ..., tokenizer: _Optional[_Union[_common_pb2.TokenizerInfo, _Mapping]] = ..., max_top_k: _Optional[int] = ..., context_length: _Optional[int] = ..., max_in_flight: _Optional[int] = ..., version: _Optional[str] = ..., scores_candidates: _Optional[bool] = ...) -> None: ...

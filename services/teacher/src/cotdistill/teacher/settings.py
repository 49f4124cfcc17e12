"""Teacher process settings, from ``COTDISTILL_TEACHER_*`` environment variables."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from cotdistill.common.samples import MAX_TOP_K
from cotdistill.common.settings import ServiceSettings


class TeacherSettings(ServiceSettings):
    """Settings of one teacher replica."""

    model_config = SettingsConfigDict(env_prefix="COTDISTILL_TEACHER_", extra="forbid", validate_default=True)

    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(9101, ge=0, le=65535, description="Prometheus /metrics port.")
    backend: Literal["auto", "vllm", "transformers", "openai"] = Field(
        "auto", description="Engine: vLLM when a GPU is present and vLLM imports, else transformers."
    )
    model: str = Field(
        "", description="Model directory served by this replica (vllm/transformers); the model name (openai)."
    )
    tokenizer: str = Field(
        "",
        description="Tokenizer directory; empty means the model's. The openai backend uses it to map "
        "returned token strings to ids and to check prompt lengths.",
    )
    data_dir: str = Field(
        "", description="Real datasets' folder for record_id prompts; empty uses COTDISTILL_DATA_DIR or ../shared/data."
    )
    max_top_k: int = Field(MAX_TOP_K, ge=0, le=MAX_TOP_K, description="Largest top_k_logprobs a request may ask for.")
    max_in_flight: int = Field(64, ge=1, le=100_000, description="Requests run at once before RESOURCE_EXHAUSTED.")
    health_check_interval_s: float = Field(
        5.0, ge=0, le=3600, description="Seconds between engine health checks (NOT_SERVING on failure); 0 is off."
    )
    default_max_tokens: int = Field(256, ge=1, description="max_tokens used when a request leaves it 0.")
    max_prompts: int = Field(4096, ge=1, description="Most prompts (or Score items) in one request.")
    max_samples_per_request: int = Field(65_536, ge=1, description="Most prompts x n samples in one Sample request.")
    max_model_len: int = Field(0, ge=0, description="Context length cap in tokens; 0 uses the model's.")
    device: str = Field("auto", description="transformers: auto, cpu or cuda[:i].")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weights dtype: auto is bfloat16 on GPU; on CPU a bfloat16 checkpoint stays bfloat16 where the"
        " CPU has native bf16 (AVX512-BF16/AMX), else float32.",
    )
    num_threads: int = Field(0, ge=0, le=1024, description="torch intra-op threads; 0 keeps torch's default.")
    max_batch_sequences: int = Field(
        256, ge=1, le=65_536, description="transformers: samples decoded together in one batch."
    )
    # vLLM
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="vLLM: GPUs per replica.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vLLM: share of GPU memory to use.")
    enforce_eager: bool = Field(False, description="vLLM: skip CUDA graphs / torch.compile (fast start).")
    max_num_seqs: int = Field(256, ge=1, description="vLLM: sequences scheduled at once.")
    vllm_logprob_mode: Literal["raw", "processed"] = Field(
        "raw",
        description="vLLM: which logprobs the engine returns (an engine-wide setting in vLLM); requests "
        "asking for the other mode get INVALID_ARGUMENT.",
    )
    seed: int = Field(0, description="vLLM engine seed (unseeded requests).")
    # OpenAI-compatible HTTP
    openai_base_url: str = Field("", description="Base URL up to /v1, e.g. http://127.0.0.1:8000/v1.")
    openai_api_key_env: str = Field(
        "", description="Name of the environment variable holding the API key; empty for none."
    )
    openai_token_ids: bool = Field(
        False,
        description="Ask a vLLM server for token ids ('token_id:N', its return_tokens_as_token_ids extension) "
        "instead of mapping token strings with the tokenizer.",
    )
    openai_probe_token_ids: bool = Field(
        True,
        description="At start, ask the server once whether it returns token ids (vLLM's and cotdistill's "
        "servers do) and use them when it does; off for APIs billed per call.",
    )
    openai_max_retries: int = Field(5, ge=0, le=100, description="Retries of a call on 429/5xx/connection errors.")
    openai_backoff_s: float = Field(0.5, ge=0, le=60, description="First retry delay; doubles each retry.")
    openai_timeout_s: float = Field(600.0, gt=0, description="Timeout of one HTTP call.")
    openai_rate_limit_rps: float = Field(0.0, ge=0, description="Most HTTP calls per second; 0 is unlimited.")
    openai_concurrency: int = Field(16, ge=1, le=4096, description="Most HTTP calls at once.")
    openai_logprob_mode: Literal["raw", "processed"] = Field(
        "raw", description="Which logprobs the remote server returns (vLLM servers: raw by default)."
    )
    openai_context_length: int = Field(
        0, ge=0, description="Context length of the remote model; 0 reads max_model_len from /v1/models."
    )

    @model_validator(mode="after")
    def _check_backend_inputs(self) -> Self:
        if self.backend == "openai":
            if not self.openai_base_url:
                raise ValueError(f"{self.env_name('openai_base_url')} is required with the openai backend")
            if not self.model:
                raise ValueError(f"{self.env_name('model')} (the remote model name) is required with openai")
        return self

"""Model server process settings, from ``COTDISTILL_SERVER_*`` environment variables.

Unsafe configurations stop the process at start-up with the variable named: no API key and no
explicit open mode, a placeholder or short key, a key file that cannot be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from cotdistill.common.path_policy import PathRoots
from cotdistill.common.settings import CallerPathSettings, is_placeholder, split_list

Backend = Literal["auto", "transformers", "vllm"]

# Shorter keys are guessable; OpenAI's are ~50 characters.
MIN_API_KEY_LENGTH = 16


class ServerSettings(CallerPathSettings):
    """Settings of the HTTP model server. /metrics is served on the main port.

    ``POST /admin/reload`` may name a checkpoint under the artifact directory, the models cache,
    the folder that holds the configured ``model``, or ``path_roots``.
    """

    model_config = SettingsConfigDict(
        env_prefix="COTDISTILL_SERVER_", extra="forbid", validate_default=True, hide_input_in_errors=True
    )

    port: int = Field(8000, ge=0, le=65535, description="HTTP port.")
    model: str = Field("", description="Student checkpoint directory to serve (SIGHUP reloads it from here).")
    served_model_name: str = Field(
        "cotdistill-student", min_length=1, description="The model id clients pass as `model` (kept across reloads)."
    )
    backend: Backend = Field(
        "transformers",
        description="Engine: transformers (dynamic batching, CPU default), vllm, or auto (vllm if importable).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype.")
    lora_adapters: str = Field(
        "",
        description="LoRA adapters served by name beside the base model: NAME=DIR,NAME2=DIR2 (vLLM's "
        "--lora-modules shape; each DIR a peft adapter with adapter_config.json). vllm backend only.",
    )
    max_lora_rank: int = Field(16, ge=1, le=512, description="Largest LoRA rank the vLLM engine reserves room for.")
    reason_format: str = Field(
        "",
        description="Student format /v1/reason uses when the request names none; empty means the format the "
        "checkpoint was trained in (its cotdistill_student.json), else ft_cot.",
    )

    # -- limits and overload --
    max_prompt_tokens: int = Field(1024, ge=1, description="Longest prompt accepted (tokens); longer -> 400.")
    max_tokens_cap: int = Field(512, ge=1, description="Largest max_tokens accepted; larger -> 400.")
    max_n: int = Field(8, ge=1, le=64, description="Largest n (completions per prompt) accepted.")
    max_concurrent: int = Field(32, ge=1, description="Completions generating at once (the engine batch).")
    max_queue: int = Field(64, ge=0, description="Completions waiting for a slot; beyond it -> 429 + Retry-After.")
    batch_window_ms: float = Field(
        5.0, ge=0, le=1000, description="An idle engine waits this long for more requests to batch with the first."
    )
    request_timeout_s: float = Field(120.0, gt=0, description="Wall-time limit of one request, queueing included.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body; larger -> 413.")

    # -- auth --
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Accepted API keys (comma-separated); sent as `Authorization: Bearer KEY`."
    )
    api_key_file: str = Field("", description="File with API keys, one per line (a mounted Kubernetes secret).")
    allow_unauthenticated: bool = Field(
        False, description="Serve without API keys (local use only); warned at start-up."
    )
    tokenizer_auth: bool = Field(
        False,
        description="Require an API key on /tokenize, /detokenize, /tokenizer_info (open by default, as vLLM's).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Browser origins allowed by CORS; empty (default) turns CORS off."
    )

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for name in ("api_keys", "cors_origins"):
                if name in data:
                    data[name] = split_list(data[name])
        return data

    @model_validator(mode="after")
    def _safe_auth(self) -> Self:
        keys = self.all_api_keys()
        if not keys and not self.allow_unauthenticated:
            raise ValueError(
                f"no API key: set {self.env_name('api_keys')} or {self.env_name('api_key_file')}, "
                f"or {self.env_name('allow_unauthenticated')}=true to serve without auth (local use only)"
            )
        for key in keys:
            if is_placeholder(key):
                raise ValueError(f"{self.env_name('api_keys')}: a key is a placeholder; set a real secret")
            if len(key) < MIN_API_KEY_LENGTH:
                raise ValueError(
                    f"{self.env_name('api_keys')}: keys must be at least {MIN_API_KEY_LENGTH} characters "
                    "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                )
        return self

    @model_validator(mode="after")
    def _adapters(self) -> Self:
        adapters = self.adapters()  # raises on a malformed entry
        if adapters and self.backend == "transformers":
            raise ValueError(
                f"{self.env_name('lora_adapters')}: LoRA adapters are served by the vllm backend; "
                f"set {self.env_name('backend')}=vllm"
            )
        if self.served_model_name in adapters:
            raise ValueError(f"{self.env_name('lora_adapters')}: an adapter is named like the served model")
        return self

    def adapters(self) -> dict[str, str]:
        """``lora_adapters`` as {name: directory}."""
        out: dict[str, str] = {}
        for entry in self.lora_adapters.replace("\n", ",").split(","):
            if not entry.strip():
                continue
            name, sep, path = entry.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(f"{self.env_name('lora_adapters')}: {entry!r} is not NAME=DIR")
            if name.strip() in out:
                raise ValueError(f"{self.env_name('lora_adapters')}: the adapter name {name.strip()!r} repeats")
            out[name.strip()] = path.strip()
        return out

    def describe(self) -> dict[str, Any]:
        """Settings safe to log: only the API keys are masked (not e.g. max_prompt_tokens)."""
        out = dict(self)
        out["api_keys"] = f"<{len(self.api_keys)} keys>"
        return out

    def reload_roots(self) -> PathRoots:
        """Where ``POST /admin/reload`` may load a checkpoint from."""
        parent = str(Path(self.model).resolve().parent) if self.model else ""
        roots = [self.artifacts_dir, self.models_dir, parent, *self.path_roots]
        return PathRoots.of(roots, self.env_name("path_roots"))

    def all_api_keys(self) -> list[str]:
        """Keys from settings plus those in the key file (blank lines and # comments skipped)."""
        keys = list(self.api_keys)
        if self.api_key_file:
            path = Path(self.api_key_file)
            try:
                lines = path.read_text().splitlines()
            except OSError as exc:
                raise ValueError(f"{self.env_name('api_key_file')}={str(path)!r} cannot be read: {exc}") from exc
            keys += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        return keys

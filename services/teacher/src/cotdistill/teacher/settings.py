"""Teacher process settings, from ``COTDISTILL_TEACHER_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cotdistill.common.settings import ServiceSettings


class TeacherSettings(ServiceSettings):
    """Settings of one teacher replica."""

    model_config = SettingsConfigDict(env_prefix="COTDISTILL_TEACHER_", extra="forbid", validate_default=True)

    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(9101, ge=0, le=65535, description="Prometheus /metrics port.")
    backend: Literal["auto", "vllm", "transformers", "openai"] = Field(
        "auto", description="Engine: vLLM when a GPU is present and vLLM imports, else transformers."
    )
    model: str = Field("", description="Model directory or id served by this replica.")
    max_top_k: int = Field(20, ge=0, le=20, description="Largest top_k_logprobs a request may ask for.")
    max_in_flight: int = Field(64, ge=1, le=100_000, description="Requests run at once before RESOURCE_EXHAUSTED.")

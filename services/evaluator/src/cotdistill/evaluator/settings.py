"""Evaluator process settings, from ``COTDISTILL_EVALUATOR_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cotdistill.common.settings import ServiceSettings


class EvaluatorSettings(ServiceSettings):
    """Settings of the evaluator service."""

    model_config = SettingsConfigDict(env_prefix="COTDISTILL_EVALUATOR_", extra="forbid", validate_default=True)

    port: int = Field(50053, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(9103, ge=0, le=65535, description="Prometheus /metrics port.")

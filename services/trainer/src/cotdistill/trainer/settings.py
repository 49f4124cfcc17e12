"""Trainer process settings, from ``COTDISTILL_TRAINER_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cotdistill.common.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    """Settings of the trainer service."""

    model_config = SettingsConfigDict(env_prefix="COTDISTILL_TRAINER_", extra="forbid", validate_default=True)

    port: int = Field(50052, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="Prometheus /metrics port.")

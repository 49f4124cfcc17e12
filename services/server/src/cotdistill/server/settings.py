"""Model server process settings, from ``COTDISTILL_SERVER_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cotdistill.common.settings import ServiceSettings


class ServerSettings(ServiceSettings):
    """Settings of the HTTP model server. /metrics is served on the main port."""

    model_config = SettingsConfigDict(env_prefix="COTDISTILL_SERVER_", extra="forbid", validate_default=True)

    port: int = Field(8000, ge=0, le=65535, description="HTTP port.")
    model: str = Field("", description="Student checkpoint directory to serve.")

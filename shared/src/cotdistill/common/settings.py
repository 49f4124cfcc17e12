"""Process settings shared by every service, read from the environment (pydantic-settings).

Each service subclasses :class:`ServiceSettings` with its own prefix, e.g.
``COTDISTILL_TEACHER_PORT``. Unsafe or placeholder values fail at start-up, naming the variable,
rather than surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values people leave in templates; starting a service with one of them is always a mistake.
_PLACEHOLDER = re.compile(r"^(changeme|change[-_ ]?me|replace[-_ ]?me|todo|fixme|xxx+|<.*>|\$\{.*\})$", re.I)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def is_placeholder(value: str) -> bool:
    """Whether ``value`` looks like an unfilled template placeholder."""
    return bool(_PLACEHOLDER.match(value.strip()))


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``model_config`` with their env prefix."""

    model_config = SettingsConfigDict(env_prefix="COTDISTILL_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Address the service listens on. Use 0.0.0.0 only inside a container.")
    port: int = Field(0, ge=0, le=65535, description="Service port; 0 picks a free one (tests).")
    metrics_host: str = Field("127.0.0.1", description="Address of the Prometheus /metrics HTTP listener.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Port of /metrics; 0 picks a free one.")
    log_level: LogLevel = "INFO"
    log_json: bool = Field(False, description="One JSON object per log line (for log shippers).")
    grace_period_s: float = Field(10.0, ge=0, le=3600, description="Drain time for in-flight work on SIGTERM.")
    artifacts_dir: str = Field("artifacts", description="Artifact store root: a directory or an fsspec URI.")

    @model_validator(mode="after")
    def _reject_placeholders(self) -> Self:
        for name, value in self:
            if isinstance(value, str) and is_placeholder(value):
                raise ValueError(f"{self.env_name(name)}={value!r} is a placeholder; set a real value")
        return self

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets ``field``."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        return f"{prefix}{field}".upper()

    def describe(self) -> dict[str, Any]:
        """Settings safe to log: secrets are masked."""
        out: dict[str, Any] = {}
        for name, value in self:
            secret = any(s in name for s in ("key", "token", "password", "secret"))
            out[name] = "***" if secret and value else value
        return out

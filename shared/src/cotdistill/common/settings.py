"""Process settings shared by every service, read from the environment (pydantic-settings).

Each service subclasses :class:`ServiceSettings` with its own prefix, e.g.
``COTDISTILL_TEACHER_PORT``. Unsafe or placeholder values fail at start-up, naming the variable,
rather than surfacing later as a confusing runtime error. :func:`load_settings` is how a service
reads them: a wrongly typed value or a misspelled ``COTDISTILL_<SERVICE>_*`` variable becomes one
line naming the variable (with "did you mean" for near misses), and the process exits with code 2.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Self, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cotdistill.common.errors import ConfigError
from cotdistill.common.path_policy import PathRoots
from cotdistill.common.suggest import closest

# Values people leave in templates; starting a service with one of them is always a mistake.
_PLACEHOLDER = re.compile(r"^(changeme|change[-_ ]?me|replace[-_ ]?me|todo|fixme|xxx+|<.*>|\$\{.*\})$", re.I)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
# The services that read COTDISTILL_<SERVICE>_* variables (a near miss of one of these is a typo).
SERVICE_NAMES = ("teacher", "trainer", "evaluator", "server")
_SECRET_PARTS = ("key", "token", "password", "secret")


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
            out[name] = "***" if _is_secret(name) and value else value
        return out


def _default_models_cache() -> Path:
    from cotdistill.common.models import default_models_cache

    return default_models_cache()


def split_list(value: object) -> object:
    """Comma- or newline-separated lists from env vars (``a,b``), or lists as they are."""
    if isinstance(value, str):
        return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
    return value


class CallerPathSettings(ServiceSettings):
    """Settings of a service that opens files requests name (evaluator, trainer, model server).

    Requests may name paths under the artifact directory, the models cache and the datasets
    folder, plus ``path_roots``; they may write (an evaluation's ``output_dir``) only under the
    artifact directory and ``path_roots``. See :mod:`cotdistill.common.path_policy`.
    """

    models_dir: str = Field(
        default_factory=lambda: str(_default_models_cache()),
        description="Models cache root (registry models); requests may name models under it. "
        "Default: $COTDISTILL_MODELS_CACHE, else $XDG_CACHE_HOME/cotdistill/models (~/.cache/...).",
    )
    data_dir: str = Field(
        "", description="Datasets folder requests may read; empty: $COTDISTILL_DATA_DIR or ../shared/data."
    )
    path_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More directories (or object-store URI prefixes) requests may name paths under, "
        "comma-separated; they may also write there.",
    )

    @field_validator("path_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        return split_list(value)

    def datasets_dir(self) -> Path:
        """The datasets folder, whether or not it exists (requests get NOT_FOUND if it does not)."""
        from cotdistill.common.tasks.paths import ENV_VAR, default_data_dir

        return Path(self.data_dir or os.environ.get(ENV_VAR) or default_data_dir())

    def read_roots(self) -> PathRoots:
        """Where requests may name files to read."""
        roots = [self.artifacts_dir, self.models_dir, str(self.datasets_dir()), *self.path_roots]
        return PathRoots.of(roots, self.env_name("path_roots"))

    def write_roots(self) -> PathRoots:
        """Where requests may have the service write."""
        return PathRoots.of([self.artifacts_dir, *self.path_roots], self.env_name("path_roots"))


S = TypeVar("S", bound=ServiceSettings)


def _is_secret(field: str) -> bool:
    return any(part in field for part in _SECRET_PARTS)


def unknown_variable(cls: type[ServiceSettings], environ: Mapping[str, str]) -> ConfigError | None:
    """The first ``COTDISTILL_*`` variable meant for ``cls`` that it has no field for, or None.

    Two kinds of typo are caught: a field name that does not exist under the service's own
    prefix (``COTDISTILL_TEACHER_MODLE``), and a near miss of the prefix itself
    (``COTDISTILL_TEACHR_MODEL``). Variables of other services and project-wide ones
    (``COTDISTILL_DATA_DIR``) are left alone: several services may share one environment.
    """
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    known = {cls.env_name(name) for name in cls.model_fields}
    # A variable another setting names (``openai_api_key_env=COTDISTILL_TEACHER_KEY``) is data.
    upper_env = {k.upper(): v for k, v in environ.items()}
    named = {upper_env.get(cls.env_name(f), "").upper() for f in cls.model_fields if f.endswith("_env")}
    service = prefix.removeprefix("COTDISTILL_").rstrip("_")
    for name in sorted(environ):
        upper = name.upper()
        if upper in named:
            continue
        if upper.startswith(prefix) and upper not in known:
            hint = closest(upper, known)
            suggestion = f"; did you mean {hint}?" if hint else f" (known: {', '.join(sorted(known))})"
            return ConfigError(f"unknown setting{suggestion}", key=name)
        segment = upper.removeprefix("COTDISTILL_").partition("_")[0]
        if not upper.startswith("COTDISTILL_") or not service or segment == service:
            continue
        if segment.lower() not in SERVICE_NAMES and closest(segment, [s.upper() for s in SERVICE_NAMES]) == service:
            meant = prefix + upper.removeprefix(f"COTDISTILL_{segment}_")
            hint = meant if meant in known else closest(meant, known)
            return ConfigError(f"not a setting of any service; did you mean {hint or prefix + '*'}?", key=name)
    return None


def _describe_error(cls: type[ServiceSettings], err: ValidationError, environ: Mapping[str, str]) -> ConfigError:
    """One line for the first problem, naming the variable (pydantic names only the field)."""
    first = err.errors()[0]
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    loc = first.get("loc", ())
    if not loc:  # a whole-model check: its message already names the variables
        return ConfigError(message)
    field = str(loc[0])
    variable = cls.env_name(field)
    raw = environ.get(variable, next((v for k, v in environ.items() if k.upper() == variable), None))
    shown = f"={raw!r}" if raw is not None and not _is_secret(field) and len(raw) <= 200 else ""
    return ConfigError(f"{message}", key=f"{variable}{shown}")


def load_settings(cls: type[S]) -> S:
    """``cls`` read from the environment (``os.environ``).

    Raises:
        ConfigError: one line naming the variable at fault (an unknown or misspelled one, or a
            value of the wrong type or out of range).
    """
    problem = unknown_variable(cls, os.environ)
    if problem is not None:
        raise problem
    try:
        return cls()
    except ValidationError as err:
        raise _describe_error(cls, err, os.environ) from None


def load_settings_or_exit(cls: type[S], service: str) -> S:
    """:func:`load_settings` for a service's ``__main__``: a problem is one line on stderr and exit 2."""
    try:
        return load_settings(cls)
    except ConfigError as err:
        exit_config_error(service, err)


def exit_config_error(service: str, err: ConfigError) -> NoReturn:
    """Print ``service: <what is wrong>`` on stderr (no traceback) and exit with code 2."""
    print(f"{service}: {err}", file=sys.stderr)
    raise SystemExit(2)

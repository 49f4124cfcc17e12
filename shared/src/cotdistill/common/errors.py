"""Errors that carry what the caller got wrong, so every layer can report it the same way."""

from __future__ import annotations


class CotdistillError(Exception):
    """Base class of the project's own errors."""


class ConfigError(CotdistillError):
    """A configuration value is invalid. The message names the key and, when known, file:line."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        self.message = message
        self.key = key
        self.source = source
        where = f"{source}: " if source else ""
        what = f"{key}: " if key else ""
        super().__init__(f"{where}{what}{message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive the default exception pickling, and errors cross
        # process boundaries (Ray workers -> the trainer service).
        return (_rebuild_config_error, (self.message, self.key, self.source))


class FieldError(CotdistillError):
    """A request field the service refuses; the message names the field. Subclasses say why."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.field, self.message))


class InvalidArgument(FieldError):
    """A request field is invalid; maps to gRPC INVALID_ARGUMENT / HTTP 400."""


class PermissionDenied(FieldError):
    """A request field names something the service may not touch (a path outside its configured
    roots); maps to gRPC PERMISSION_DENIED / HTTP 403."""


class FailedPrecondition(FieldError):
    """A request field names something that exists but is not usable as it is (a model directory
    that does not load); maps to gRPC FAILED_PRECONDITION / HTTP 400."""


class NotFound(CotdistillError):
    """A named resource does not exist; maps to gRPC NOT_FOUND / HTTP 404."""


class Unavailable(CotdistillError):
    """A dependency cannot be reached; maps to gRPC UNAVAILABLE / HTTP 503."""


class ResourceExhausted(CotdistillError):
    """The service is full (a teacher replica runs ``max_in_flight`` requests already); maps to
    gRPC RESOURCE_EXHAUSTED / HTTP 429. The message says where to retry: the caller's request
    was fine, so clients retry it later or on another replica (``cotdistill.common.retry``)."""


def _rebuild_config_error(message: str, key: str | None, source: str | None) -> ConfigError:
    return ConfigError(message, key=key, source=source)

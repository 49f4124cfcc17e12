"""Errors that carry what the caller got wrong, so every layer can report it the same way."""

from __future__ import annotations


class CotdistillError(Exception):
    """Base class of the project's own errors."""


class ConfigError(CotdistillError):
    """A configuration value is invalid. The message names the key and, when known, file:line."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        self.key = key
        self.source = source
        where = f"{source}: " if source else ""
        what = f"{key}: " if key else ""
        super().__init__(f"{where}{what}{message}")


class InvalidArgument(CotdistillError):
    """A request field is invalid; maps to gRPC INVALID_ARGUMENT / HTTP 400."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class NotFound(CotdistillError):
    """A named resource does not exist; maps to gRPC NOT_FOUND / HTTP 404."""


class Unavailable(CotdistillError):
    """A dependency cannot be reached; maps to gRPC UNAVAILABLE / HTTP 503."""

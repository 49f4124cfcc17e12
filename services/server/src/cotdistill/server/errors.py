"""Every error leaves the server in OpenAI's JSON shape, with a real status and the field named.

``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`` is what OpenAI clients
parse (the ``openai`` package raises ``BadRequestError``/``RateLimitError``/... from the status and
shows ``message``). One place maps every exception the app can raise; nothing leaks a traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cotdistill.common.errors import FieldError, NotFound, PermissionDenied

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error response: HTTP ``status``, OpenAI ``type``, the offending ``param`` and a ``code``."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error(
    status: int,
    message: str,
    kind: str,
    code: str | None = None,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error in OpenAI's JSON shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return JSONResponse(status_code=status, content=error_body(message, kind, param, code), headers=dict(headers or {}))


def bad_request(param: str, message: str, code: str | None = None) -> APIError:
    """400 naming the request field at fault."""
    return APIError(400, f"{param}: {message}", param=param, code=code)


# pydantic puts union member tags in error locations ("str", "list[int]", "function-after[...]").
_TYPE_TAG = re.compile(
    r"^(str|int|float|bool|none|bytes|[a-z-]+\[.*\]|function-[a-z]+|constrained-[a-z]+|json-or-python.*)$"
)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header") and not _TYPE_TAG.match(str(p))]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


_STATUS_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
}


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to an OpenAI-shaped response."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return openai_error(exc.status, exc.message, exc.kind, exc.code, param=exc.param, headers=exc.headers)

    @app.exception_handler(FieldError)
    async def field_error(request: Request, exc: FieldError) -> JSONResponse:
        if isinstance(exc, PermissionDenied):
            return openai_error(403, str(exc), "permission_error", param=exc.field)
        return openai_error(400, str(exc), "invalid_request_error", param=exc.field)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return openai_error(404, str(exc), "not_found_error")

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        param = _field_path(tuple(first.get("loc", ("body",))))
        message = f"{param}: {first.get('msg', 'invalid value')}"
        if first.get("type") == "json_invalid":
            message = "body: the request body is not valid JSON"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        return openai_error(400, message, "invalid_request_error", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.detail else "error"
        param = None
        if exc.status_code == 400:  # FastAPI's "There was an error parsing the body"
            param, message = "body", f"body: {message}"
        elif exc.status_code == 413:  # a chunked body that outgrew the limit while being read
            param = "body"
        if exc.status_code == 404:
            message = f"{request.url.path} not found"
        elif exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        kind = _STATUS_TYPES.get(exc.status_code, "invalid_request_error")
        return openai_error(exc.status_code, message, kind, param=param, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return openai_error(500, "internal server error", "server_error")

"""The OpenAPI spec documents every status the app returns (schemathesis checks it).

Each route names its error statuses with the shared response dicts below; ``finalize_spec``
replaces FastAPI's automatic 422 (this server answers invalid input with 400, as OpenAI does),
adds 413 to every operation (the body limit is enforced before routing) and fills in the
server's runtime limits (model id, max_tokens cap, n cap).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, naming the field at fault.")
    type: str = Field(description="invalid_request_error, authentication_error, rate_limit_error, ...")
    param: str | None = Field(None, description="The request field at fault, when there is one.")
    code: str | None = Field(None, description="A machine-readable reason (context_length_exceeded, ...).")


class ErrorResponse(BaseModel):
    """OpenAI's error shape: what the ``openai`` client parses into its exceptions."""

    error: ErrorDetail


Responses = dict[int | str, dict[str, Any]]


def _error(status: int, description: str) -> Responses:
    return {status: {"model": ErrorResponse, "description": description}}


BAD_REQUEST = _error(400, "Invalid request: the message and `param` name the field.")
UNAUTHORIZED = _error(401, "Missing or wrong API key.")
NOT_FOUND = _error(404, "`model` is not the served model id.")
NOT_READY = _error(503, "The model is not loaded yet (Retry-After).")
OVERLOADED = _error(429, "The queue is full (Retry-After).")
TIMED_OUT = _error(504, "The request did not finish within the server's request timeout.")

GENERATION_RESPONSES: Responses = {
    **BAD_REQUEST,
    **UNAUTHORIZED,
    **NOT_FOUND,
    **OVERLOADED,
    **NOT_READY,
    **TIMED_OUT,
}
READ_RESPONSES: Responses = {**UNAUTHORIZED, **NOT_FOUND, **NOT_READY}
TOKENIZER_RESPONSES: Responses = {**BAD_REQUEST, **UNAUTHORIZED, **NOT_FOUND, **NOT_READY}
ADMIN_RESPONSES: Responses = {
    **BAD_REQUEST,
    **UNAUTHORIZED,
    **_error(403, "Reload from a non-loopback client while the server has no API keys."),
}

_TOO_LARGE = {
    "description": "The body is larger than the server's limit.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}


def finalize_spec(spec: dict[str, Any], *, model_id: str, max_tokens_cap: int, max_n: int) -> dict[str, Any]:
    """Make the generated spec match what the app really answers (see the module docstring)."""
    for operations in spec.get("paths", {}).values():
        for op in operations.values():
            responses = op.get("responses", {})
            validation = responses.pop("422", None)
            if validation is not None and "400" not in responses:
                responses["400"] = {
                    "description": "Invalid request: the message and `param` name the field.",
                    "content": _TOO_LARGE["content"],
                }
            responses.setdefault("413", _TOO_LARGE)
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for name in ("CompletionRequest", "ChatCompletionRequest"):
        props = schemas.get(name, {}).get("properties", {})
        if "model" in props:
            props["model"]["enum"] = [model_id]
        for field in ("max_tokens", "max_completion_tokens"):
            for option in props.get(field, {}).get("anyOf", []):
                if option.get("type") == "integer":
                    option["maximum"] = max_tokens_cap
        if "n" in props:
            props["n"]["maximum"] = max_n
    return spec

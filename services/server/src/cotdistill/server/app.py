"""The FastAPI application factory: ``build_app(settings)``; state lives on ``app.state``."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from cotdistill.common.metrics import new_registry
from cotdistill.server.settings import ServerSettings

log = logging.getLogger(__name__)

PROVIDER = (
    "the OpenAI-compatible and /v1/reason endpoints arrive with the model server work (issue: Student model server)"
)


def openai_error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    """An error in OpenAI's JSON shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "param": None, "code": code}}
    )


def build_app(settings: ServerSettings) -> FastAPI:
    """Build the app. Nothing global: each app owns its settings, registry and model state."""
    app = FastAPI(title="cotdistill model server", version="0.1.0")
    registry = new_registry()
    app.state.settings = settings
    app.state.registry = registry
    app.state.ready = True  # no model to load yet; becomes "model loaded" with the engine
    requests = Counter(
        "cotdistill_http_requests_total",
        "HTTP requests finished, by route and status.",
        ["route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "cotdistill_http_request_duration_seconds", "HTTP request wall time, by route.", ["route"], registry=registry
    )

    @app.middleware("http")
    async def record(request: Request, call_next):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        requests.labels(path, str(response.status_code)).inc()
        latency.labels(path).observe(time.perf_counter() - start)
        return response

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        """Readiness: the model is loaded and requests can be served."""
        if not app.state.ready:
            return JSONResponse(status_code=503, content={"status": "loading"})
        return JSONResponse(content={"status": "ready"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.api_route("/v1/{path:path}", methods=["GET", "POST"], include_in_schema=False)
    async def not_yet(path: str) -> JSONResponse:
        return openai_error(501, f"/v1/{path} is not implemented yet: {PROVIDER}", "not_implemented_error")

    return app

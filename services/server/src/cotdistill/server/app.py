"""The FastAPI application factory: ``build_app(settings)``; state lives on ``app.state``.

Start-up returns at once: the model loads in the background, so /health answers immediately and
/ready turns 200 only once the model is loaded. SIGHUP reloads the configured checkpoint (and
re-reads the API key file). Shutdown lets in-flight requests finish, then frees the engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cotdistill.common.metrics import new_registry
from cotdistill.server import routes_admin, routes_openai, routes_reason, routes_tokenizer
from cotdistill.server.admission import Admission
from cotdistill.server.auth import ApiKeys
from cotdistill.server.engine.base import Engine, EngineLoadError
from cotdistill.server.errors import install_error_handlers, openai_error
from cotdistill.server.execution import REQUEST_ID_SCOPE_KEY, AppContext
from cotdistill.server.metrics import ServerMetrics
from cotdistill.server.models import ModelHolder
from cotdistill.server.openapi import NOT_READY, finalize_spec
from cotdistill.server.settings import ServerSettings

log = logging.getLogger(__name__)

__all__ = ["build_app", "openai_error"]


def default_loader(settings: ServerSettings, metrics: ServerMetrics) -> Callable[[str], Awaitable[Engine]]:
    """Load a checkpoint with the configured backend, in a thread (loading blocks for seconds)."""
    from cotdistill.server.engine.vllm_engine import vllm_available

    backend = settings.backend
    if backend == "auto":
        backend = "vllm" if vllm_available() else "transformers"

    async def load(path: str) -> Engine:
        if backend == "vllm":
            from cotdistill.server.engine.vllm_engine import VllmEngine

            return await asyncio.to_thread(
                VllmEngine.load,
                path,
                max_batch_size=settings.max_concurrent,
                dtype=settings.dtype,
                adapters=settings.adapters(),
                max_lora_rank=settings.max_lora_rank,
            )
        from cotdistill.server.engine.transformers_engine import TransformersEngine

        return await asyncio.to_thread(
            TransformersEngine.load,
            path,
            max_batch_size=settings.max_concurrent,
            batch_window_s=settings.batch_window_ms / 1000,
            dtype=settings.dtype,
            on_step=metrics.batch_size.observe,
        )

    return load


class HttpGuard:
    """Pure ASGI middleware: request metrics by route and status, and the body size limit.

    Pure ASGI (not BaseHTTPMiddleware) so streaming responses and disconnect detection pass
    through untouched.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes
        if too_large:
            await self._too_large(scope, receive, send)
            self._record(scope, 413, start)
            return
        seen = 0
        rid = _client_request_id(headers.get(b"x-request-id")) or uuid.uuid4().hex
        scope[REQUEST_ID_SCOPE_KEY] = rid

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        finally:
            self._record(scope, status, start)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = openai_error(
            413,
            f"body: larger than this server's limit of {self.max_body_bytes} bytes",
            "invalid_request_error",
            code="request_too_large",
            param="body",
        )
        await response(scope, receive, send)

    def _record(self, scope: Scope, status: int, start: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", "unmatched")  # unmatched paths share one label: bounded cardinality
        self.metrics.http_requests.labels(path, str(status)).inc()
        self.metrics.http_latency.labels(path).observe(time.perf_counter() - start)


def _client_request_id(value: bytes | None) -> str | None:
    """The client's X-Request-Id when it is a sane token (printable ASCII, <= 128 chars)."""
    if not value or len(value) > 128:
        return None
    text = value.decode("ascii", "replace")
    return text if text.isprintable() and "\ufffd" not in text else None


class BodyTooLarge(StarletteHTTPException):
    """A chunked body grew past the limit while being read (FastAPI re-raises HTTPExceptions)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: larger than this server's limit of {limit} bytes")


def build_app(settings: ServerSettings, *, loader: Callable[[str], Awaitable[Engine]] | None = None) -> FastAPI:
    """Build the app. Nothing global: each app owns its settings, registry, model and limits.

    ``loader`` (path -> Engine) replaces the real backends in unit tests.
    """
    registry = new_registry()
    metrics = ServerMetrics(registry)
    holder = ModelHolder(loader or default_loader(settings, metrics))
    admission = Admission(settings.max_concurrent, settings.max_queue)
    api_keys = ApiKeys(settings.all_api_keys())
    ctx = AppContext(settings, holder, admission, metrics, api_keys)

    def engine_stats() -> tuple[int, int]:
        served = holder.current
        stats = served.engine.stats() if served is not None else None
        return (stats.running if stats else 0, stats.waiting if stats else 0)

    metrics.track(
        running=lambda: engine_stats()[0],
        waiting=lambda: admission.waiting + engine_stats()[1],
    )

    async def load_initial(app: FastAPI) -> None:
        try:
            await holder.reload(settings.model)
        except EngineLoadError as exc:
            metrics.reloads.labels("refused").inc()
            on_fatal = getattr(app.state, "on_fatal", None)
            if on_fatal is not None:
                on_fatal(f"the model failed to load: {exc}")
            return
        metrics.reloads.labels("loaded").inc()
        metrics.model_loaded.set(1)
        # The model and libraries are millions of long-lived objects: frozen, the collector no
        # longer walks them, so its full collections stop stalling the event loop (and with it
        # /health) for hundreds of milliseconds under load. vLLM's server does the same.
        gc.freeze()

    async def on_sighup() -> None:
        try:
            api_keys.replace(settings.all_api_keys())
        except ValueError as exc:
            log.error("SIGHUP: keeping the current API keys: %s", exc)
        if not settings.model:
            log.warning("SIGHUP: no checkpoint configured (COTDISTILL_SERVER_MODEL); nothing to reload")
            return
        try:
            await holder.reload(settings.model)
        except EngineLoadError:
            metrics.reloads.labels("refused").inc()
            return
        metrics.reloads.labels("loaded").inc()
        metrics.model_loaded.set(1)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if api_keys.open:
            log.warning(
                "OPEN MODE: no API keys; anyone who can reach %s:%s can use this server (local use only)",
                settings.host,
                settings.port,
            )
        log.info("model server settings: %s", settings.describe())
        tasks: set[asyncio.Task[None]] = set()
        if settings.model:
            task = asyncio.create_task(load_initial(app))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            holder.load_error = "no model configured: set COTDISTILL_SERVER_MODEL or POST /admin/reload"
            log.warning("%s", holder.load_error)
        loop = asyncio.get_running_loop()

        def hup() -> None:
            task = asyncio.create_task(on_sighup())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        try:
            loop.add_signal_handler(signal.SIGHUP, hup)
            hup_installed = True
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread (tests, embedding)
            hup_installed = False
        try:
            yield
        finally:
            if hup_installed:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await holder.close()
            metrics.model_loaded.set(0)

    app = FastAPI(
        title="cotdistill model server",
        version="0.1.0",
        description="Serves a distilled chain-of-thought student: OpenAI-compatible completions and chat, "
        "and /v1/reason (rationale + answer).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.api_keys = api_keys
    app.state.holder = holder
    app.state.ctx = ctx
    install_error_handlers(app)

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], responses={**NOT_READY})
    async def ready() -> Response:
        """Readiness: the model is loaded and requests can be served (503 before)."""
        served = holder.current
        if served is None:
            return JSONResponse(status_code=503, content={"status": "loading", "detail": holder.load_error})
        return JSONResponse(content={"status": "ready", "model": served.path, "backend": served.engine.backend})

    @app.get("/metrics", tags=["operations"])
    async def metrics_endpoint() -> Response:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        """The spec, with every status the app returns and this server's limits filled in."""
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = finalize_spec(
                spec,
                model_id=settings.served_model_name,
                max_tokens_cap=settings.max_tokens_cap,
                max_n=settings.max_n,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(routes_openai.router)
    app.include_router(routes_tokenizer.router)
    app.include_router(routes_reason.router)
    app.include_router(routes_admin.router)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(HttpGuard, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app

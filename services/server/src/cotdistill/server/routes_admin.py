"""POST /admin/reload: load a checkpoint beside the served one and switch to it.

Needs an API key like every other endpoint; in open mode (no keys) only loopback clients may
call it, since it makes the server read a path from its filesystem.
"""

from __future__ import annotations

import ipaddress
import time

from fastapi import APIRouter, Request

from cotdistill.server.auth import Authenticated
from cotdistill.server.engine.base import EngineLoadError
from cotdistill.server.errors import APIError
from cotdistill.server.execution import context
from cotdistill.server.openapi import ADMIN_RESPONSES
from cotdistill.server.protocol import ReloadRequest, ReloadResponse

router = APIRouter(prefix="/admin", dependencies=[Authenticated], tags=["admin"])


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@router.post("/reload", response_model=ReloadResponse, responses=ADMIN_RESPONSES)
async def reload(request: Request, body: ReloadRequest | None = None) -> ReloadResponse:
    """Load ``model`` (default: the configured checkpoint); 400 and no change if it fails."""
    ctx = context(request)
    if ctx.api_keys.open and not _is_loopback(request.client.host if request.client else None):
        raise APIError(403, "reload is only allowed from loopback when the server has no API keys", "permission_error")
    path = (body.model if body else None) or ctx.settings.model
    if not path:
        raise APIError(400, "model: no checkpoint given and none configured", param="model")
    started = time.perf_counter()
    try:
        served = await ctx.holder.reload(path)
    except EngineLoadError as exc:
        ctx.metrics.reloads.labels("refused").inc()
        raise APIError(
            400, f"model: {exc}; still serving the previous model", param="model", code="checkpoint_refused"
        ) from exc
    ctx.metrics.reloads.labels("loaded").inc()
    ctx.metrics.model_loaded.set(1)
    return ReloadResponse(model=served.path, backend=served.engine.backend, loaded_in_s=time.perf_counter() - started)

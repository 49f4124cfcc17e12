"""API-key authentication: ``Authorization: Bearer KEY``, compared in constant time.

Keys are compared as SHA-256 digests with :func:`hmac.compare_digest` against *every* configured
key (no early exit), so neither timing nor length says how close a guess was. A failure answers
401 with one fixed message whether the header was missing, malformed or wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cotdistill.server.errors import APIError

log = logging.getLogger(__name__)

UNAUTHORIZED = "Invalid or missing API key. Send it as `Authorization: Bearer <key>`."


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The accepted keys (as digests); no keys means open mode."""

    def __init__(self, keys: list[str]) -> None:
        self._digests: list[bytes] = []
        self.replace(keys)

    def replace(self, keys: list[str]) -> None:
        """Swap the key set (e.g. a rotated secret file re-read on SIGHUP)."""
        self._digests = [_digest(k) for k in keys]

    @property
    def open(self) -> bool:
        return not self._digests

    def accepts(self, token: str | None) -> bool:
        if self.open:
            return True
        candidate = _digest(token or "")
        ok = False
        for digest in self._digests:
            ok |= hmac.compare_digest(candidate, digest)
        return ok


bearer = HTTPBearer(auto_error=False, description="An API key of this server.")


async def require_api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """FastAPI dependency: 401 unless the request carries an accepted key (or the server is open)."""
    keys: ApiKeys = request.app.state.api_keys
    if keys.accepts(credentials.credentials if credentials else None):
        return
    request.app.state.metrics.rejected.labels("unauthorized").inc()
    raise APIError(
        401, UNAUTHORIZED, "authentication_error", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
    )


Authenticated = Depends(require_api_key)

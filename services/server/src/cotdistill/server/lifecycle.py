"""Process lifecycle of the HTTP server: graceful drain on SIGTERM, then a clean exit."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

import uvicorn


class GracefulServer(uvicorn.Server):
    """uvicorn's server, but SIGTERM/SIGINT end in exit code 0 after the drain.

    Recent uvicorn re-raises the captured signal once shut down, so the process dies "killed by
    SIGTERM"; for a service that drained cleanly that reads as a failure to supervisors and tests.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def handle(sig: int, frame: FrameType | None) -> None:
            self.handle_exit(sig, frame)

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

"""The served model and its hot reload: load the new checkpoint beside the old, then switch.

Requests *lease* the current engine for their whole duration. A reload loads the new engine
while the old one keeps serving; the switch is one assignment, so every request runs entirely
on one model; the old engine is closed only when its last lease ends: no request is dropped.
A checkpoint that fails to load is refused and the old model keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cotdistill.server.engine.base import Engine, EngineLoadError
from cotdistill.server.errors import APIError

log = logging.getLogger(__name__)

Loader = Callable[[str], Awaitable[Engine]]


@dataclass(eq=False)
class Served:
    """One loaded engine and its bookkeeping."""

    engine: Engine
    path: str
    # The student format the checkpoint was trained in (its cotdistill_student.json); "" otherwise.
    training_format: str = ""
    loaded_at: float = field(default_factory=time.time)
    leases: int = 0
    retired: bool = False
    drained: asyncio.Event = field(default_factory=asyncio.Event)


class NotReady(APIError):
    def __init__(self, why: str) -> None:
        super().__init__(503, why, "service_unavailable", code="model_not_ready", headers={"Retry-After": "5"})


class ModelHolder:
    """Holds the current engine; ``lease()`` for requests, ``reload(path)`` to switch."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self.current: Served | None = None
        self.load_error: str | None = None
        self._lock = asyncio.Lock()
        self._closers: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self.current is not None

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Engine]:
        """The current engine, kept alive until the ``async with`` ends (503 when none)."""
        served = self.current
        if served is None:
            raise NotReady(self.load_error or "the model is still loading")
        served.leases += 1
        try:
            yield served.engine
        finally:
            served.leases -= 1
            if served.retired and served.leases == 0:
                served.drained.set()

    async def reload(self, path: str) -> Served:
        """Load ``path`` beside the current model and switch to it; raises EngineLoadError."""
        async with self._lock:  # one load at a time: two would hold three models in memory
            started = time.perf_counter()
            log.info("loading checkpoint %s", path)
            try:
                where = await asyncio.to_thread(_model_dir, path)
                engine = await self._loader(where)
            except EngineLoadError as exc:
                if self.current is None:
                    self.load_error = f"no model: {exc}"
                log.error(
                    "checkpoint refused, %s: %s", "keeping the current model" if self.current else "none loaded", exc
                )
                raise
            trained = read_student_format(where) or {}
            old, self.current = self.current, Served(engine, path, str(trained.get("format", "")))
            self.load_error = None
            log.info("serving %s (%s backend, loaded in %.1f s)", path, engine.backend, time.perf_counter() - started)
            if old is not None:
                old.retired = True
                if old.leases == 0:
                    old.drained.set()
                task = asyncio.create_task(self._close_when_drained(old))
                self._closers.add(task)
                task.add_done_callback(self._closers.discard)
            return self.current

    async def _close_when_drained(self, old: Served) -> None:
        await old.drained.wait()
        log.info("closing the previous model %s (drained)", old.path)
        await old.engine.close()

    async def close(self) -> None:
        """Close every engine (shutdown): waits for retired ones to drain first."""
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)
        if self.current is not None:
            await self.current.engine.close()
            self.current = None


def read_student_format(directory: str) -> dict[str, object] | None:
    from cotdistill.common.tasks.student_chat import read_student_format as read

    return read(directory)


def _model_dir(ref: str) -> str:
    """A registry name (or GGUF file) as the directory it materializes to; paths stay as given."""
    from cotdistill.common.errors import CotdistillError
    from cotdistill.common.models import is_registry_name, resolve_model

    if not (is_registry_name(ref) or ref.lower().endswith(".gguf")):
        return ref
    try:
        return str(resolve_model(ref))
    except CotdistillError as err:
        raise EngineLoadError(f"model {ref!r}: {err}") from err

"""Run records and event logs, persisted in SQLite in the artifact directory.

One file (``<artifacts>/trainer.sqlite``) holds every run's record (the ``Run`` proto, with its
state and creation order in their own columns for filtering and paging) and its append-only
event log (``RunEvent`` protos keyed by run and sequence). Records survive service restarts;
sequences are dense from 1, so a watcher resumes exactly where it stopped.

The store is shared by the asyncio loop (RPCs) and the threads that drive runs: every call
takes one lock, and each write is its own transaction.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from cotdistill.common.errors import InvalidArgument, NotFound
from cotdistill.trainer.events import now
from cotdistill.v1 import trainer_pb2

DB_NAME = "trainer.sqlite"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    ordinal INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    state INTEGER NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state, ordinal);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (run_id, sequence)
);
"""


def new_run_id() -> str:
    """A short unique id that is also a safe directory name."""
    return f"run-{uuid.uuid4().hex[:12]}"


def _encode_token(ordinal: int) -> str:
    return base64.urlsafe_b64encode(f"o:{ordinal}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        kind, value = base64.urlsafe_b64decode(padded.encode()).decode().split(":", 1)
        if kind != "o":
            raise ValueError(kind)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "not a token from a previous ListRuns page") from exc


class RunStore:
    """Run records and event logs in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Records ---------------------------------------------------------------------------------

    def create(self, run: trainer_pb2.Run) -> trainer_pb2.Run:
        """Insert a new record (``run.run_id`` must be new)."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO runs (run_id, state, record) VALUES (?, ?, ?)",
                (run.run_id, int(run.state), run.SerializeToString()),
            )
        return run

    def get(self, run_id: str) -> trainer_pb2.Run:
        """The record of ``run_id``.

        Raises:
            NotFound: no such run.
        """
        with self._lock:
            row = self._db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist")
        return trainer_pb2.Run.FromString(row[0])

    def update(self, run_id: str, change: Callable[[trainer_pb2.Run], None]) -> trainer_pb2.Run:
        """Apply ``change`` to the stored record atomically and return the new record."""
        with self._lock, self._db:
            row = self._db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"run {run_id!r} does not exist")
            run = trainer_pb2.Run.FromString(row[0])
            change(run)
            self._db.execute(
                "UPDATE runs SET state = ?, record = ? WHERE run_id = ?",
                (int(run.state), run.SerializeToString(), run_id),
            )
        return run

    def list_runs(
        self, state: int = trainer_pb2.RUN_STATE_UNSPECIFIED, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[trainer_pb2.Run], str]:
        """Runs newest first, optionally in one state; returns (page, next page token or "")."""
        if page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"at most {MAX_PAGE_SIZE}; got {page_size}")
        size = page_size or DEFAULT_PAGE_SIZE
        before = _decode_token(page_token) if page_token else None
        where, params = [], []
        if state != trainer_pb2.RUN_STATE_UNSPECIFIED:
            where.append("state = ?")
            params.append(int(state))
        if before is not None:
            where.append("ordinal < ?")
            params.append(before)
        sql = "SELECT ordinal, record FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ordinal DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*params, size + 1)).fetchall()
        page = [trainer_pb2.Run.FromString(record) for _, record in rows[:size]]
        token = _encode_token(rows[size - 1][0]) if len(rows) > size else ""
        return page, token

    def active(self) -> list[trainer_pb2.Run]:
        """Runs PENDING or RUNNING, oldest first (what a restarted service must take over)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM runs WHERE state IN (?, ?) ORDER BY ordinal",
                (trainer_pb2.RUN_STATE_PENDING, trainer_pb2.RUN_STATE_RUNNING),
            ).fetchall()
        return [trainer_pb2.Run.FromString(r[0]) for r in rows]

    def count_by_state(self) -> dict[int, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM runs GROUP BY state").fetchall()
        return {int(state): int(n) for state, n in rows}

    # Event log -------------------------------------------------------------------------------

    def append_event(self, event: trainer_pb2.RunEvent) -> trainer_pb2.RunEvent:
        """Append ``event`` to its run's log with the next sequence number (set on the event)."""
        if not event.HasField("time"):
            event.time.CopyFrom(now())
        with self._lock, self._db:
            (last,) = self._db.execute(
                "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE run_id = ?", (event.run_id,)
            ).fetchone()
            event.sequence = int(last) + 1
            self._db.execute(
                "INSERT INTO events (run_id, sequence, event) VALUES (?, ?, ?)",
                (event.run_id, event.sequence, event.SerializeToString()),
            )
        return event

    def events(self, run_id: str, from_sequence: int = 1, limit: int = 1000) -> list[trainer_pb2.RunEvent]:
        """Events of ``run_id`` with sequence >= ``from_sequence``, in order, at most ``limit``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT event FROM events WHERE run_id = ? AND sequence >= ? ORDER BY sequence LIMIT ?",
                (run_id, max(1, from_sequence), limit),
            ).fetchall()
        return [trainer_pb2.RunEvent.FromString(r[0]) for r in rows]

    def last_sequence(self, run_id: str) -> int:
        with self._lock:
            (last,) = self._db.execute(
                "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE run_id = ?", (run_id,)
            ).fetchone()
        return int(last)

"""The trainer owns the local Ray it starts: no Ray process outlives the service for long.

A local Ray runtime is a dozen processes (GCS, raylet, dashboard and runtime-env agents, log
monitor, idle workers). Killed with SIGKILL, the service leaves them running, and some (the
agents) even outlive ``ray.shutdown()`` and ignore SIGTERM; every restart would add another
set. Process groups cannot tell them apart (Ray workers make their own, and the service may
share its group and session with whatever launched it), and Ray renames its workers
(``ray::IDLE``), so command lines cannot either. What every one of them keeps is the
environment it was started with: before ``ray.init`` the service sets :data:`OWNER_ENV` to a
marker naming itself (pid and kernel start time, so a reused pid is not mistaken for it) and
its artifact directory (its identity across restarts), and every Ray process inherits it.

Three clean-ups use the marker:

* at start-up, :func:`reap_stale` kills the Ray processes of earlier owners of the same
  artifact directory that are no longer alive (a SIGKILLed service; a crashed host process);
* on a graceful stop, after ``ray.shutdown()``, :func:`reap` kills what is left of its own;
* a small watchdog process (:func:`spawn_watchdog`, this module's ``main``), started in its own
  session so that a signal to the service's process group does not reach it, polls the owner
  and kills its Ray processes within a second or two of the owner's death, so a SIGKILLed
  service that is never restarted does not leave them behind either.

Linux only (``/proc``); elsewhere the functions find nothing and the watchdog is not started.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

OWNER_ENV = "COTDISTILL_RAY_OWNER"
"""Environment variable that marks a process as part of a trainer service's local Ray."""

WATCHDOG_POLL_S = 0.5
KILL_WAIT_S = 5.0
TERM_WAIT_S = 2.0
PROC = Path("/proc")


@dataclass(frozen=True)
class Owner:
    """A trainer service process that started a local Ray runtime."""

    pid: int
    start_ticks: int  # /proc/<pid>/stat start time: tells a live owner from a reused pid
    scope: str  # hash of the artifact directory: the service's identity across restarts

    @classmethod
    def current(cls, artifacts: Path) -> Owner:
        pid = os.getpid()
        return cls(pid, process_start_ticks(pid) or 0, scope_of(artifacts))

    @property
    def marker(self) -> str:
        return f"{self.pid}.{self.start_ticks}@{self.scope}"

    @classmethod
    def parse(cls, marker: str) -> Owner | None:
        try:
            who, scope = marker.split("@", 1)
            pid, ticks = who.split(".", 1)
            return cls(int(pid), int(ticks), scope)
        except ValueError:
            return None

    def alive(self) -> bool:
        return process_start_ticks(self.pid) == self.start_ticks


def scope_of(artifacts: Path) -> str:
    """Short stable id of an artifact directory."""
    return hashlib.sha256(str(Path(artifacts).resolve()).encode()).hexdigest()[:12]


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (None: no such process, or a zombie).

    A killed process stays a zombie until its parent waits for it; it runs nothing any more, so
    it counts as dead.
    """
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        state, ticks = fields[0], int(fields[19])  # fields 3 and 22 of the whole line
    except (IndexError, ValueError):
        return None
    return None if state in ("Z", "X") else ticks


def _marker_of(pid: int) -> str | None:
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, or another user's process
        return None
    prefix = OWNER_ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def marked_processes(scope: str | None = None) -> dict[int, Owner]:
    """Processes carrying an owner marker (optionally of one artifact scope): pid -> owner."""
    found: dict[int, Owner] = {}
    if not PROC.is_dir():
        return found
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        marker = _marker_of(int(entry.name))
        owner = Owner.parse(marker) if marker else None
        if owner is not None and (scope is None or owner.scope == scope):
            found[int(entry.name)] = owner
    return found


def _kill(pids: Iterable[int], sig: int) -> list[int]:
    killed = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            killed.append(pid)
    return killed


def _wait_gone(pids: Iterable[int], timeout_s: float) -> list[int]:
    """Wait until the processes exit; returns those still there after ``timeout_s``."""
    left = list(pids)
    deadline = time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        left = [p for p in left if _marker_of(p) is not None]
        if left:
            time.sleep(0.05)
    return left


def reap(owner: Owner, *, term_first: bool = False) -> list[int]:
    """Kill every process of ``owner``'s Ray runtime; returns their pids.

    term_first: SIGTERM, then SIGKILL whatever is left after a few seconds (a graceful stop);
    otherwise SIGKILL at once (the owner is dead: nothing to wind down cleanly).
    """
    pids = [pid for pid, o in marked_processes(owner.scope).items() if o == owner]
    if not pids:
        return []
    if term_first:
        _kill(pids, signal.SIGTERM)
        left = _wait_gone(pids, TERM_WAIT_S)
    else:
        left = pids
    _kill(left, signal.SIGKILL)
    _wait_gone(left, KILL_WAIT_S)
    return pids


def reap_stale(artifacts: Path) -> list[int]:
    """Kill the Ray processes left by dead earlier owners of ``artifacts``; returns their pids."""
    stale = [pid for pid, owner in marked_processes(scope_of(artifacts)).items() if not owner.alive()]
    if stale:
        _kill(stale, signal.SIGKILL)
        _wait_gone(stale, KILL_WAIT_S)
        log.warning("killed %d Ray processes left by an earlier trainer service: %s", len(stale), stale)
    return stale


def spawn_watchdog(owner: Owner) -> subprocess.Popen[bytes] | None:
    """Start the watchdog that reaps ``owner``'s Ray when it dies (None where there is no /proc).

    Its own session: a signal to the service's process group (Ctrl-C, a supervisor's kill of the
    group) must not take the watchdog down with the service. Without the marker in its own
    environment, it never counts itself among the processes to kill.
    """
    if not PROC.is_dir():
        return None
    env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    return subprocess.Popen(
        [sys.executable, "-m", "cotdistill.trainer.ray_ownership", owner.marker],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def watch(owner: Owner, poll_s: float = WATCHDOG_POLL_S) -> int:
    """Block until ``owner`` exits, then kill its Ray processes; returns how many."""
    while owner.alive():
        time.sleep(poll_s)
    return len(reap(owner))


def main(argv: list[str] | None = None) -> int:
    """``python -m cotdistill.trainer.ray_ownership MARKER``: the watchdog process."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("marker", help="the owner marker (pid.start_ticks@scope)")
    args = parser.parse_args(argv)
    owner = Owner.parse(args.marker)
    if owner is None:
        parser.error(f"not an owner marker: {args.marker!r}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the service
    watch(owner)
    return 0


if __name__ == "__main__":
    sys.exit(main())

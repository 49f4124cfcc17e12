"""Ray processes are marked with their owner and reaped when the owner is gone (no Ray needed:
marked ``sleep`` processes stand in for Ray's daemons and workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cotdistill.trainer.ray_ownership import (
    OWNER_ENV,
    Owner,
    marked_processes,
    process_start_ticks,
    reap,
    reap_stale,
    scope_of,
    spawn_watchdog,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux)")


def _sleeper(marker: str | None = None, *, own_session: bool = False) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    if marker is not None:
        env[OWNER_ENV] = marker
    # Ignores SIGTERM, as Ray's agents were seen to: only SIGKILL ends it.
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
        "time.sleep(120)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, start_new_session=own_session, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def _wait(check: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()
        if p.stdout is not None:
            p.stdout.close()


def _owner_of(proc: subprocess.Popen[bytes], artifacts: Path) -> Owner:
    _wait(lambda: process_start_ticks(proc.pid) is not None)
    return Owner(proc.pid, process_start_ticks(proc.pid) or 0, scope_of(artifacts))


def test_marker_round_trips_and_a_reused_pid_is_not_the_owner(tmp_path: Path) -> None:
    me = Owner.current(tmp_path)
    assert Owner.parse(me.marker) == me and me.alive()
    assert not Owner(me.pid, me.start_ticks + 1, me.scope).alive()  # same pid, other process
    assert Owner.parse("garbage") is None


def test_stale_ray_processes_of_a_dead_owner_are_killed_and_others_left(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    dead = _sleeper()
    procs.append(dead)
    dead_owner = _owner_of(dead, tmp_path)
    dead.kill()
    dead.wait()
    live = _sleeper()
    procs.append(live)
    live_owner = _owner_of(live, tmp_path)
    other_scope = Owner(dead_owner.pid, dead_owner.start_ticks, scope_of(tmp_path / "elsewhere"))
    orphans = [_sleeper(dead_owner.marker) for _ in range(3)]
    kept = [_sleeper(live_owner.marker), _sleeper(other_scope.marker)]
    procs.extend(orphans + kept)
    _wait(lambda: len(marked_processes(scope_of(tmp_path))) == 4)

    killed = reap_stale(tmp_path)

    assert sorted(killed) == sorted(p.pid for p in orphans)
    for p in orphans:
        assert p.wait(timeout=10) == -signal.SIGKILL
    assert all(p.poll() is None for p in kept)
    assert set(marked_processes(scope_of(tmp_path))) == {kept[0].pid}


def test_graceful_reap_sigkills_what_ignores_sigterm(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    owner = Owner.current(tmp_path)
    children = [_sleeper(owner.marker) for _ in range(2)]
    procs.extend(children)
    _wait(lambda: len(marked_processes(owner.scope)) == 2)
    assert sorted(reap(owner, term_first=True)) == sorted(p.pid for p in children)
    assert all(p.wait(timeout=10) == -signal.SIGKILL for p in children)


def test_watchdog_reaps_the_ray_of_a_sigkilled_owner(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    service = _sleeper()
    procs.append(service)
    owner = _owner_of(service, tmp_path)
    ray_like = [_sleeper(owner.marker, own_session=True) for _ in range(3)]
    procs.extend(ray_like)
    watchdog = spawn_watchdog(owner)
    assert watchdog is not None
    procs.append(watchdog)
    _wait(lambda: len(marked_processes(owner.scope)) == 3)
    time.sleep(0.3)
    assert all(p.poll() is None for p in ray_like)  # the owner lives: nothing is touched

    service.kill()

    for p in ray_like:
        assert p.wait(timeout=15) == -signal.SIGKILL
    assert watchdog.wait(timeout=15) == 0

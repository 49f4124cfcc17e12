"""The trainer owns its local Ray: killing the service never leaves Ray processes behind for good.

Uses the package's shared service (and leaves a running one behind for the tests after it).
A SIGTERMed service is checked by ``TrainerUnderTest.restart`` in test_ray_runs.py.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.conftest import wait_until
from tests.integration.trainer.conftest import TrainerUnderTest, ray_processes_of, watchdog_of

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc (Linux)")


def test_sigkilled_service_leaves_no_ray_processes_after_restart_or_watchdog(trainer: TrainerUnderTest) -> None:
    # 1. The service and its watchdog are SIGKILLed together (as by an OOM kill of the group):
    #    Ray's agents outlive them, and the next service on the same artifacts reaps them.
    pid = trainer.service.proc.pid
    ray_before = ray_processes_of(pid)
    assert len(ray_before) >= 3, ray_before  # GCS, raylet, agents, idle workers (eager start)
    watchdog = watchdog_of(pid)
    assert watchdog is not None
    os.kill(watchdog, signal.SIGKILL)
    trainer.service.proc.kill()
    trainer.service.proc.wait()
    time.sleep(2.0)
    orphans = ray_processes_of(pid)
    trainer.start()
    assert orphans, "nothing outlived the kill: this test would not notice a leak"
    assert ray_processes_of(pid) == [], f"orphans of the killed service still run: {ray_processes_of(pid)}"
    second = trainer.service.proc.pid
    assert len(ray_processes_of(second)) >= 3  # the new service's own runtime, one set only

    # 2. The service alone is SIGKILLed: its watchdog reaps its Ray without waiting for a restart.
    trainer.service.proc.kill()
    trainer.service.proc.wait()
    try:
        wait_until(lambda: not ray_processes_of(second), 20, "the watchdog to reap the killed service's Ray")
        wait_until(lambda: watchdog_of(second) is None, 20, "the watchdog to exit")
    finally:
        trainer.start()  # the next tests share this service

"""Sampling job faults against real teacher replicas (`cotdistill serve teacher`, transformers).

* the driver is SIGKILLed mid-job and started again: it resumes, and no finished unit is
  sampled twice (exactly the one unit in flight is redone);
* one of two replicas is SIGKILLed mid-job: its unit is retried on the other replica and the job
  completes.

Both check exactly-once by counting (example, sample index) pairs in the stored shards.

Every fault lands while the victim holds a unit, without depending on timing: the replicas are
frozen (SIGSTOP) first, then the test waits for the driver to log ``unit_started`` for a unit
sent to a frozen replica. That unit cannot finish (the replica runs nothing until SIGCONT), so the
kill always finds it in flight. (Killing "after N units completed" could land between units and
then there was no unit to lose: the test failed about once in four suite runs.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cotdistill.common.samples import read_samples
from tests.integration.conftest import ServiceProcess, grpc_serving, start_service, wait_until

VENV_BIN = Path(sys.executable).parent
EXAMPLES, D, UNIT = 16, 4, 2
TEACHER_ENV = {
    "COTDISTILL_TEACHER_BACKEND": "transformers",
    "COTDISTILL_TEACHER_NUM_THREADS": "1",
    "COTDISTILL_TEACHER_GRACE_PERIOD_S": "1",
}


@pytest.fixture(scope="module")
def replicas(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServiceProcess]]:
    env = {**TEACHER_ENV, "COTDISTILL_TEACHER_MODEL": str(tiny_models["teacher"])}
    started = [start_service("teacher", tmp_path_factory.mktemp(f"teacher{i}"), env) for i in range(2)]
    for service in started:
        wait_until(lambda s=service: grpc_serving(s.address), 120, f"teacher {service.address} SERVING", service)
    yield started
    for service in started:
        service.terminate(timeout_s=10)


def recipe(tmp_path: Path, addresses: list[str], concurrency: int) -> Path:
    config = {
        "name": "faults",
        "output_dir": str(tmp_path / "runs"),
        "teacher": {"addresses": addresses, "timeout_s": 60, "connect_timeout_s": 30},
        "sampling": {
            "dataset": "synthetic_arithmetic",
            "split": "train",
            "limit": EXAMPLES,
            "num_samples": D,
            "temperature": 1.0,
            "max_tokens": 24,
            "top_k_logprobs": 5,
            "unit_size": UNIT,
            "concurrency": concurrency,
            "seed": 7,
            "retry_delay_s": 0.1,
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_driver(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.Popen(
        [str(VENV_BIN / "cotdistill"), "sample", str(config), *extra], stdout=handle, stderr=subprocess.STDOUT, env=env
    )


def events(samples: Path) -> list[dict[str, object]]:
    """The job's event log; a line the driver is still writing (no newline yet) is left out."""
    path = samples / "events.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def completed(samples: Path) -> int:
    return sum(1 for e in events(samples) if e["event"] == "unit_completed")


@contextlib.contextmanager
def frozen(*services: ServiceProcess) -> Iterator[None]:
    """SIGSTOP ``services`` for the block (SIGCONT after, unless killed meanwhile)."""
    for service in services:
        service.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for service in services:
            if service.proc.poll() is None:
                service.proc.send_signal(signal.SIGCONT)


def in_flight(log_events: list[dict[str, object]]) -> set[str]:
    """Units started and neither completed nor failed since (their latest attempt)."""
    running: set[str] = set()
    for e in log_events:
        if e["event"] == "unit_started":
            running.add(str(e["unit_id"]))
        elif e["event"] in ("unit_completed", "unit_failed"):
            running.discard(str(e["unit_id"]))
    return running


def held_unit(
    samples: Path, replicas: set[str], driver: subprocess.Popen[bytes], *, settle_s: float | None = None
) -> str:
    """A unit in flight on one of ``replicas``, which the caller has just frozen (SIGSTOP).

    A unit the driver starts on a frozen replica after the freeze is held for sure: the replica
    runs nothing until it is resumed or killed. While another replica keeps serving, round-robin
    sends such a unit within two picks. When every replica is frozen (``settle_s`` set) the
    driver may instead wait on the unit it had in flight at the freeze: that one is taken as held
    once it stayed unfinished for ``settle_s`` (a driver with every result in hand needs
    milliseconds to store it, then sends its next unit, which is held for sure).
    """
    mark = len(events(samples))
    found: list[str] = []
    since: dict[str, float] = {}

    def held() -> bool:
        log_events = events(samples)
        running = {u for u in in_flight(log_events) if _replica_of(log_events, u) in replicas}
        fresh = [
            str(e["unit_id"])
            for e in log_events[mark:]
            if e["event"] == "unit_started" and str(e["unit_id"]) in running
        ]
        now = time.monotonic()
        settled = [u for u in running if settle_s is not None and now - since.setdefault(u, now) >= settle_s]
        found[:] = fresh or settled
        return bool(found) or driver.poll() is not None

    wait_until(held, 60, f"a unit held by a frozen replica ({', '.join(sorted(replicas))})")
    assert found, "the driver exited before a frozen replica held a unit"
    return found[0]


def _replica_of(log_events: list[dict[str, object]], unit_id: str) -> str:
    """The replica of the latest attempt of ``unit_id``."""
    starts = [e for e in log_events if e["event"] == "unit_started" and e["unit_id"] == unit_id]
    return str(starts[-1]["replica"])


def assert_exactly_once(samples: Path) -> None:
    table = read_samples(samples)
    pairs = Counter(zip(table.example_id, table.sample_index.tolist(), strict=True))
    ids = {f"synthetic_arithmetic:train:{i}" for i in range(EXAMPLES)}
    assert set(pairs) == {(e, s) for e in ids for s in range(D)}, "some (example, sample) pairs are missing"
    assert set(pairs.values()) == {1}, f"duplicates: {[p for p, n in pairs.items() if n > 1]}"
    assert table.k == 5 and len(table.token_ids) == int(table.token_offsets[-1])


def test_driver_killed_mid_job_resumes_without_redoing_finished_units(
    replicas: list[ServiceProcess], tmp_path: Path
) -> None:
    config = recipe(tmp_path, [r.address for r in replicas], concurrency=1)
    samples, log = tmp_path / "runs" / "faults" / "samples", tmp_path / "driver.log"
    first = start_driver(config, log, "--no-filter")
    try:
        wait_until(lambda: completed(samples) >= 3 or first.poll() is not None, 90, "3 units completed")
        assert first.poll() is None, f"the job finished before it could be killed:\n{log.read_text()}"
        with frozen(*replicas):
            # concurrency 1: the one unit in flight is held, or the next one the driver sends.
            held_unit(samples, {r.address for r in replicas}, first, settle_s=2.0)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    done_before = completed(samples)
    assert 3 <= done_before < EXAMPLES // UNIT
    # What the first run had in flight when it died, read from its own log (concurrency 1).
    lost = in_flight(events(samples))
    assert len(lost) == 1, lost
    second = start_driver(config, log)
    assert second.wait(120) == 0, log.read_text()

    assert_exactly_once(samples)
    runs = {str(e["run"]) for e in events(samples)}
    assert len(runs) == 2
    starts: dict[str, set[str]] = {}
    completions: Counter[str] = Counter()
    for e in events(samples):
        if e["event"] == "unit_started":
            starts.setdefault(str(e["unit_id"]), set()).add(str(e["run"]))
        elif e["event"] == "unit_completed":
            completions[str(e["unit_id"])] += 1
    assert len(completions) == EXAMPLES // UNIT and set(completions.values()) == {1}, "a finished unit was redone"
    redone = [u for u, r in starts.items() if len(r) > 1]
    assert set(redone) == lost, f"exactly the unit in flight at the kill is redone: {redone}, not {lost}"
    stats = json.loads((samples.parent / "train" / "filter_stats.json").read_text())
    assert stats["total"] == EXAMPLES * D and stats["kept"] + stats["dropped_total"] == stats["total"]


def test_replica_killed_mid_job_its_units_move_to_the_other(replicas: list[ServiceProcess], tmp_path: Path) -> None:
    victim, survivor = replicas
    config = recipe(tmp_path, [victim.address, survivor.address], concurrency=2)
    samples, log = tmp_path / "runs" / "faults" / "samples", tmp_path / "driver.log"
    driver = start_driver(config, log, "--no-filter")
    try:
        # One unit done proves both channels work; 7 of 8 units are left for the fault.
        wait_until(lambda: completed(samples) >= 1 or driver.poll() is not None, 90, "a unit completed")
        assert driver.poll() is None, f"the job finished before the replica could be killed:\n{log.read_text()}"
        with frozen(victim):
            held = held_unit(samples, {victim.address}, driver)
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
        assert driver.wait(120) == 0, log.read_text()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert_exactly_once(samples)
    log_events = events(samples)
    failed = [e for e in log_events if e["event"] == "unit_failed"]
    assert failed and {e["replica"] for e in failed} == {victim.address}, failed
    assert held in {e["unit_id"] for e in failed}, "the unit the victim held failed over"
    finished_on = Counter(str(e["replica"]) for e in log_events if e["event"] == "unit_completed")
    assert finished_on[survivor.address] > finished_on[victim.address]
    for failure in failed:  # each failed unit was finished by the survivor
        assert any(
            e["event"] == "unit_completed" and e["unit_id"] == failure["unit_id"] and e["replica"] == survivor.address
            for e in log_events
        )

"""Sampling job faults against real teacher replicas (`cotdistill serve teacher`, transformers).

* the driver is SIGKILLed mid-job and started again: it resumes, and no finished unit is
  sampled twice (exactly the one unit in flight is redone);
* one of two replicas is SIGKILLed mid-job: its unit is retried on the other replica and the job
  completes.

Both check exactly-once by counting (example, sample index) pairs in the stored shards.

Every fault lands while a unit is in flight, without depending on timing: a replica is frozen
(SIGSTOP) first, then the test waits for the driver to log ``unit_started`` for a unit sent to
the frozen replica. That unit cannot finish (the replica runs nothing until SIGCONT), so the kill
always finds it in flight. (Killing "after N units completed" could land between units, and then
there was no unit to lose: the test failed about once in four suite runs.)

The scoring job (`cotdistill score`, the same machinery) gets the replica kill too, landed the
same way: see :func:`test_scoring_replica_killed_holding_a_unit_it_is_scored_elsewhere`.
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


def in_flight(log_events: list[dict[str, object]], replica: str | None = None) -> set[str]:
    """Units started and neither completed nor failed since (on ``replica`` when given)."""
    running: dict[str, str] = {}
    for e in log_events:
        if e["event"] == "unit_started":
            running[str(e["unit_id"])] = str(e["replica"])
        elif e["event"] in ("unit_completed", "unit_failed"):
            running.pop(str(e["unit_id"]), None)
    return {u for u, r in running.items() if replica is None or r == replica}


# The job's units take tens of milliseconds on an idle machine: watch its log at that pace.
POLL_S = 0.01


def wait_for_completed(samples: Path, units: int, driver: subprocess.Popen[bytes]) -> None:
    check = lambda: completed(samples) >= units or driver.poll() is not None  # noqa: E731
    wait_until(check, 90, f"{units} units completed", poll_s=POLL_S)


@contextlib.contextmanager
def holding_a_unit(
    replicas: list[ServiceProcess], samples: Path, driver: subprocess.Popen[bytes], concurrency: int
) -> Iterator[tuple[ServiceProcess, str]]:
    """Freeze (SIGSTOP) one of ``replicas`` and yield it with the id of a unit it holds; SIGCONT
    after, if it is still alive.

    The held unit is one the driver sent *after* the freeze: a stopped process runs nothing, so
    that unit stays in flight until the replica is resumed or killed, whatever the timing. (A unit
    sent before the freeze may already have all its results in the driver's hands.) The frozen
    replica is one that holds fewer units than the driver runs at once, so at least one of the
    driver's slots keeps going, and round-robin sends it to the frozen replica within two units.
    """
    mark = [0]
    chosen: list[ServiceProcess] = []

    def pick() -> bool:
        log_events = events(samples)
        mark[0] = len(log_events)  # units started from here on count as sent after the freeze
        chosen[:] = [r for r in replicas if len(in_flight(log_events, r.address)) < concurrency]
        return bool(chosen) or driver.poll() is not None

    wait_until(pick, 60, f"a replica holding fewer than {concurrency} units", poll_s=POLL_S)
    assert chosen, f"the driver exited (code {driver.returncode}) before a replica could be frozen"
    victim = chosen[0]
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        held: list[str] = []

        def sent_after_freeze() -> bool:
            log_events = events(samples)
            running = in_flight(log_events, victim.address)
            held[:] = [
                str(e["unit_id"])
                for e in log_events[mark[0] :]
                if e["event"] == "unit_started" and str(e["unit_id"]) in running
            ]
            return bool(held) or driver.poll() is not None

        wait_until(sent_after_freeze, 60, f"a unit sent to the frozen replica {victim.address}", poll_s=POLL_S)
        assert held, f"the driver exited (code {driver.returncode}) before it sent a unit to the frozen replica"
        yield victim, held[0]
    finally:
        if victim.proc.poll() is None:
            victim.proc.send_signal(signal.SIGCONT)


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
        wait_for_completed(samples, 2, first)
        assert first.poll() is None, f"the job finished before it could be killed:\n{log.read_text()}"
        # The other replica keeps serving; the kill lands while the frozen one holds a unit.
        with holding_a_unit(replicas, samples, first, concurrency=1) as (_, held):
            first.send_signal(signal.SIGKILL)
            first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    done_before = completed(samples)
    assert 2 <= done_before < EXAMPLES // UNIT
    assert in_flight(events(samples)) == {held}  # concurrency 1: the one unit in flight at the kill
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
    assert redone == [held], f"exactly the unit in flight at the kill is redone: {redone}, not {held}"
    stats = json.loads((samples.parent / "train" / "filter_stats.json").read_text())
    assert stats["total"] == EXAMPLES * D and stats["kept"] + stats["dropped_total"] == stats["total"]


def test_replica_killed_mid_job_its_units_move_to_the_other(replicas: list[ServiceProcess], tmp_path: Path) -> None:
    config = recipe(tmp_path, [r.address for r in replicas], concurrency=2)
    samples, log = tmp_path / "runs" / "faults" / "samples", tmp_path / "driver.log"
    driver = start_driver(config, log, "--no-filter")
    try:
        # One unit done proves both channels work; 7 of 8 units are left for the fault.
        wait_for_completed(samples, 1, driver)
        assert driver.poll() is None, f"the job finished before the replica could be killed:\n{log.read_text()}"
        with holding_a_unit(replicas, samples, driver, concurrency=2) as (victim, held):
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
        assert driver.wait(120) == 0, log.read_text()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert_exactly_once(samples)
    survivor = next(r for r in replicas if r is not victim)
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


RATIONALES = 40  # scored one per unit: the job takes long enough to freeze the victim first


def test_scoring_replica_killed_holding_a_unit_it_is_scored_elsewhere(
    replicas: list[ServiceProcess], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """One replica is killed while it holds a scoring unit; the unit is scored on the other, every
    gold rationale is stored exactly once, and the filter keeps them all.

    The fault lands deterministically: the victim is frozen (SIGSTOP) once the job has started, so
    the next unit it gets hangs; the test waits until the job's last event is that unit starting
    on the victim (with concurrency 1 nothing else can move), then SIGKILLs it: the call fails
    with UNAVAILABLE mid-unit, never before or after it. Both replicas are started here: the
    module's own may have been killed by the tests before (CI once found both gone).
    """
    env = {**TEACHER_ENV, "COTDISTILL_TEACHER_MODEL": str(tiny_models["teacher"])}
    (tmp_path / "victim").mkdir()
    (tmp_path / "survivor").mkdir()
    victim = start_service("teacher", tmp_path / "victim", env)
    survivor = start_service("teacher", tmp_path / "survivor", env)
    try:
        for service in (victim, survivor):
            wait_until(lambda s=service: grpc_serving(s.address), 120, f"{service.name} SERVING", service)
        _score_and_kill(victim, survivor, tmp_path)
    finally:
        if victim.proc.poll() is None:
            victim.proc.send_signal(signal.SIGCONT)
            victim.terminate(timeout_s=10)
        survivor.terminate(timeout_s=10)


def _score_and_kill(victim: ServiceProcess, survivor: ServiceProcess, tmp_path: Path) -> None:
    recipe = {
        "name": "scored",
        "output_dir": str(tmp_path / "runs"),
        "teacher": {"addresses": [survivor.address, victim.address], "timeout_s": 60, "connect_timeout_s": 30},
        "scoring": {
            "dataset": "synthetic_arithmetic",
            "split": "train",
            "limit": RATIONALES,
            "top_k_logprobs": 5,
            "unit_size": 1,
            "concurrency": 1,
            "retry_delay_s": 0.1,
        },
    }
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    samples, log = tmp_path / "runs" / "scored" / "samples", tmp_path / "driver.log"
    with log.open("ab") as handle:
        driver = subprocess.Popen(
            [str(VENV_BIN / "cotdistill"), "score", str(config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "120"},
        )
    try:
        # Polled tightly: the job's 40 units take a second or more; the victim must freeze first.
        deadline = time.monotonic() + 90
        while not any(e["event"] == "job_started" for e in events(samples)):
            assert time.monotonic() < deadline and driver.poll() is None, log.read_text()
            time.sleep(0.005)
        victim.proc.send_signal(signal.SIGSTOP)

        def holds_a_unit() -> bool:
            last = events(samples)[-1]
            return last["event"] == "unit_started" and last["replica"] == victim.address

        # Stable for 0.5 s: the unit went to the frozen victim and nothing else moves.
        wait_until(lambda: holds_a_unit() and (time.sleep(0.5) or holds_a_unit()), 60, "a unit held by the victim")
        held = events(samples)[-1]["unit_id"]
        assert driver.poll() is None, f"the job finished before the fault:\n{log.read_text()}"
        victim.proc.send_signal(signal.SIGKILL)
        assert driver.wait(120) == 0, log.read_text()
    finally:
        if driver.poll() is None:
            driver.kill()

    table = read_samples(samples)
    pairs = Counter(zip(table.example_id, table.sample_index.tolist(), strict=True))
    assert set(pairs) == {(f"synthetic_arithmetic:train:{i}", 0) for i in range(RATIONALES)}
    assert set(pairs.values()) == {1}, f"duplicates: {[p for p, n in pairs.items() if n > 1]}"
    assert table.k == 5 and len(table.token_ids) == int(table.token_offsets[-1]) > 0
    log_events = events(samples)
    failed = [e for e in log_events if e["event"] == "unit_failed"]
    # The held unit failed first; later units the dead victim gets after its cool-down fail fast too.
    assert failed[0]["unit_id"] == held and "UNAVAILABLE" in str(failed[0]["error"])
    assert {e["replica"] for e in failed} == {victim.address}
    done = Counter(str(e["unit_id"]) for e in log_events if e["event"] == "unit_completed")
    assert len(done) == RATIONALES and set(done.values()) == {1}
    for failure in failed:  # each failed unit was scored by the survivor
        assert any(
            e["event"] == "unit_completed" and e["unit_id"] == failure["unit_id"] and e["replica"] == survivor.address
            for e in log_events
        )
    stats = json.loads((samples.parent / "train" / "filter_stats.json").read_text())
    assert stats["total"] == stats["kept"] == RATIONALES  # gold rationales: all correct, none truncated

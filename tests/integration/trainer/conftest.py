"""A Ray-backed trainer service shared by the trainer integration tests, plus a tiny task.

One service process (one local Ray runtime) serves every test in the folder: starting Ray costs
seconds, and the tests run one after another anyway. The restart test restarts it in place.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import ServiceProcess, grpc_serving, start_service, wait_until

# Lighter Ray for a 2-core machine (see ../shared/notes/STACK.md).
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "1",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "COTDISTILL_TRAINER_RAY_NUM_CPUS": "2",
    "COTDISTILL_TRAINER_RAY_OBJECT_STORE_MB": "80",
    "COTDISTILL_TRAINER_GRACE_PERIOD_S": "30",
    "COTDISTILL_TRAINER_RAY_START": "eager",
    "OMP_NUM_THREADS": "1",
}


@dataclass
class TrainerUnderTest:
    """The running service and what it needs to be restarted on the same artifacts."""

    service: ServiceProcess
    tmp: Path

    @property
    def address(self) -> str:
        return self.service.address

    @property
    def artifacts(self) -> Path:
        return self.tmp / "trainer-artifacts"

    def restart(self) -> None:
        """SIGTERM, check that no process of its Ray runtime is left, start again."""
        pid = self.service.proc.pid
        assert self.service.terminate(timeout_s=60) == 0, self.service.log()[-4000:]
        assert ray_processes_of(pid) == [], "Ray processes outlived a SIGTERMed trainer"
        self.service = _start(self.tmp)

    def start(self) -> None:
        """Start again after the test killed the service."""
        self.service = _start(self.tmp)


def ray_processes_of(service_pid: int) -> list[int]:
    """Pids of the processes of the local Ray runtime that the trainer process ``service_pid`` started."""
    from cotdistill.trainer.ray_ownership import marked_processes

    return sorted(pid for pid, owner in marked_processes().items() if owner.pid == service_pid)


def watchdog_of(service_pid: int) -> int | None:
    """Pid of the watchdog process that reaps the Ray runtime of ``service_pid`` when it dies."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cotdistill.trainer.ray_ownership" in argv and any(a.startswith(f"{service_pid}.".encode()) for a in argv):
            return int(proc.name)
    return None


def _start(tmp: Path) -> ServiceProcess:
    service = start_service("trainer", tmp, RAY_ENV)
    # SERVING comes after the local Ray runtime is up (COTDISTILL_TRAINER_RAY_START=eager): seconds
    # on an idle machine, more on a busy one.
    wait_until(lambda: grpc_serving(service.address), 300, "the trainer service to serve", service)
    return service


@pytest.fixture(scope="package")
def trainer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainerUnderTest]:
    tmp = tmp_path_factory.mktemp("trainer-service")
    under_test = TrainerUnderTest(_start(tmp), tmp)
    yield under_test
    under_test.service.terminate(timeout_s=60)


def arithmetic_jsonl(path: Path, n: int = 96, seed: int = 0) -> Path:
    """Question / rationale / answer rows of a small addition task (SFT data)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(n):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            row = {"question": f"What is {a} plus {b}?", "rationale": f"{a} plus {b} is {a + b}.", "answer": str(a + b)}
            handle.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="package")
def task(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny student (Llama, Metaspace BPE) and SFT data for it."""
    from cotdistill.pipeline.tiny_models import build_causal_lm, reasoning_corpus, train_tokenizer

    root = tmp_path_factory.mktemp("trainer-task")
    tokenizer = train_tokenizer(reasoning_corpus(), "metaspace_bpe", 200)
    student = build_causal_lm(root / "student", tokenizer, hidden_size=64, seed=2)
    return {"student": student, "train": arithmetic_jsonl(root / "train.jsonl")}

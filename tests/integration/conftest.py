"""Helpers to run services as real processes, the way users start them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cotdistill.pipeline.local_services import PATH_CONFINED
from tests.conftest import free_port

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def requests_may_name_test_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Let the services under test open what the tests build: models, data and runs under the
    session's temporary folder (as an operator sets COTDISTILL_<SERVICE>_PATH_ROOTS). Services
    started as processes inherit it; tests of the confinement pass their own roots."""
    base = str(tmp_path_factory.getbasetemp())
    with pytest.MonkeyPatch.context() as patch:
        for service in PATH_CONFINED:
            patch.setenv(f"COTDISTILL_{service.upper()}_PATH_ROOTS", base)
        yield


def tool(name: str) -> str:
    """A command-line tool from the project's venv (or PATH); skip with a reason when missing."""
    found = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.skip(f"{name} is not installed (make setup installs it)")
    return found


@dataclass
class ServiceProcess:
    name: str
    port: int
    metrics_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_service(name: str, tmp: Path, extra_env: dict[str, str] | None = None) -> ServiceProcess:
    """Start ``cotdistill serve NAME`` on loopback with free ports."""
    port, metrics_port = free_port(), free_port()
    prefix = f"COTDISTILL_{name.upper()}_"
    env = {
        **os.environ,
        f"{prefix}PORT": str(port),
        f"{prefix}HOST": "127.0.0.1",
        f"{prefix}METRICS_PORT": str(metrics_port),
        f"{prefix}ARTIFACTS_DIR": str(tmp / f"{name}-artifacts"),
        **(extra_env or {}),
    }
    log_path = tmp / f"{name}.log"
    handle = log_path.open("wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "cotdistill"), "serve", name], env=env, stdout=handle, stderr=subprocess.STDOUT
    )
    return ServiceProcess(name, port, metrics_port, proc, log_path)


def grpc_serving(address: str) -> bool:
    """Whether the standard gRPC health check at ``address`` answers SERVING (False while it is down)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_until(
    check: object, timeout_s: float, what: str, service: ServiceProcess | None = None, *, poll_s: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service is not None and service.proc.poll() is not None:
            raise AssertionError(f"{service.name} exited with {service.proc.returncode}:\n{service.log()}")
        if check():  # type: ignore[operator]
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}" + (f"\n{service.log()}" if service else ""))


@pytest.fixture
def run_service(tmp_path: Path) -> Iterator[object]:
    started: list[ServiceProcess] = []

    def start(name: str, extra_env: dict[str, str] | None = None) -> ServiceProcess:
        service = start_service(name, tmp_path, extra_env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.terminate()

"""Start the services as local processes on loopback (the embedded default), and stop them.

Used by ``make demo``: each service is started the way a user starts it (``cotdistill serve X``)
on free ports, and counted ready only when a real health check answers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cotdistill.common.grpc_client import open_channel, wait_for_ready

GRPC_SERVICES = {
    "teacher": "cotdistill.v1.TeacherService",
    "trainer": "cotdistill.v1.TrainerService",
    "evaluator": "cotdistill.v1.EvaluatorService",
}
HTTP_SERVICES = ("server",)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalService:
    name: str
    port: int
    metrics_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        port = self.port if self.name in HTTP_SERVICES else self.metrics_port
        return f"http://127.0.0.1:{port}/metrics"


# Services that open files named in requests, each only under its roots (cotdistill.common.path_policy).
PATH_CONFINED = ("trainer", "evaluator", "server")


def path_roots_env(name: str, roots: Sequence[Path]) -> dict[str, str]:
    """The environment that lets service ``name`` open request paths under ``roots`` too (the
    local run folders: the services' own artifact directories are roots already)."""
    if name not in PATH_CONFINED or not roots:
        return {}
    return {f"COTDISTILL_{name.upper()}_PATH_ROOTS": ",".join(str(r) for r in roots)}


def start(name: str, log_dir: Path, env: dict[str, str] | None = None) -> LocalService:
    """Start ``cotdistill serve NAME`` with loopback ports; output goes to LOG_DIR/NAME.log."""
    port, metrics_port = free_port(), free_port()
    prefix = f"COTDISTILL_{name.upper()}_"
    full_env = {
        **os.environ,
        f"{prefix}HOST": "127.0.0.1",
        f"{prefix}PORT": str(port),
        f"{prefix}METRICS_PORT": str(metrics_port),
        **(env or {}),
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    exe = shutil.which("cotdistill", path=str(Path(sys.executable).parent)) or "cotdistill"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([exe, "serve", name], env=full_env, stdout=log, stderr=subprocess.STDOUT)
    return LocalService(name, port, metrics_port, proc, log_path)


async def wait_ready(service: LocalService, timeout_s: float = 120) -> float:
    """Wait for the service's health check; returns seconds since start. Raises with the log tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            tail = service.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{service.name} exited with code {service.proc.returncode}:\n{tail}")
        try:
            if service.name in GRPC_SERVICES:
                async with open_channel(service.address) as channel:
                    await wait_for_ready(channel, GRPC_SERVICES[service.name], timeout_s=2)
            else:
                await asyncio.to_thread(_http_get, f"http://{service.address}/ready")
            return time.monotonic() - service.started
        except (TimeoutError, OSError):
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{service.name} not ready after {timeout_s}s; see {service.log_path}")


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as response:
        data: bytes = response.read()
    return data


def http_get_text(url: str) -> str:
    """GET ``url`` and return the body as text (used for /metrics)."""
    return _http_get(url).decode()


def stop(service: LocalService, timeout_s: float = 20) -> int:
    """SIGTERM (graceful drain), then SIGKILL after ``timeout_s``; returns the exit code."""
    if service.proc.poll() is None:
        service.proc.send_signal(signal.SIGTERM)
        try:
            service.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            service.proc.kill()
            service.proc.wait()
    return int(service.proc.returncode)

"""A real model server on loopback: uvicorn on 127.0.0.1 (port 0) in a thread, a tiny checkpoint."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from cotdistill.server.app import build_app
from cotdistill.server.settings import ServerSettings

API_KEY = "test-key-0123456789abcdef"
MODEL = "cotdistill-student"


@dataclass
class RunningServer:
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread
    base_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=60, **kw)

    def metric(self, name: str) -> float:
        """Sum of a metric's samples whose line starts with ``name`` (labels included in name)."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (len(line) == len(name) or line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(settings: ServerSettings, *, wait_ready: bool = True, timeout_s: float = 60) -> RunningServer:
    app = build_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    running = RunningServer(app, server, thread, f"http://127.0.0.1:{port}")
    if wait_ready:
        while httpx.get(f"{running.base_url}/ready", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                running.stop()
                raise AssertionError("the model did not load")
            time.sleep(0.05)
    return running


# Renders the Fine-tune-CoT training format ({q} ###  -> " {rationale} --> {answer} END"), as the
# chat template a trained checkpoint carries; system text goes on its own line in front.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}{{ m['content'] }} ###"
    "{% else %} {{ m['content'] }} END\n{% endif %}{% endfor %}"
)


def chat_templated_student(student: Path, root: Path) -> Path:
    """A copy of the tiny student whose tokenizer carries :data:`CHAT_TEMPLATE`."""
    out = root / "student-chat"
    if not out.exists():
        shutil.copytree(student, out)
        config_path = out / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config["chat_template"] = CHAT_TEMPLATE
        config_path.write_text(json.dumps(config))
    return out


def server_settings(model: Path | str, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "port": 0,
        "model": str(model),
        "api_keys": [API_KEY],
        "max_tokens_cap": 64,
        "request_timeout_s": 60,
    }
    values.update(overrides)
    return ServerSettings(**values)


@pytest.fixture(scope="module")
def served(tiny_models: dict[str, Path]) -> Iterator[RunningServer]:
    """One server per test module on the tiny student."""
    running = start_server(server_settings(tiny_models["student"]))
    yield running
    running.stop()


@pytest.fixture
def make_server() -> Iterator[Callable[..., RunningServer]]:
    """Start servers with custom settings; stopped after the test."""
    started: list[RunningServer] = []

    def make(settings: ServerSettings, **kw: Any) -> RunningServer:
        running = start_server(settings, **kw)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()

"""A real OpenAI-compatible HTTP server on loopback (FastAPI + uvicorn) that returns planted
completions, and an in-process evaluator gRPC server on port 0."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException

from tests.conftest import free_port


@dataclass
class PlantedEndpoint:
    """``/v1/completions`` answers ``completions[model][prompt][j]`` for sample j (cycling)."""

    base_url: str = ""
    completions: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    calls: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)


def build_app(endpoint: PlantedEndpoint) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in endpoint.completions]}

    @app.post("/v1/completions")
    def completions(body: dict[str, Any]) -> dict[str, Any]:
        endpoint.calls += 1
        endpoint.bodies.append(body)
        table = endpoint.completions.get(body["model"])
        if table is None:
            raise HTTPException(404, f"no model {body['model']}")
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        n = int(body.get("n", 1))
        choices = []
        for p in prompts:
            planted = table.get(p)
            if planted is None:
                raise HTTPException(400, f"unexpected prompt {p[:60]!r}")
            for j in range(n):
                choices.append({"index": len(choices), "text": planted[j % len(planted)], "finish_reason": "stop"})
        return {"id": "cmpl-1", "object": "text_completion", "model": body["model"], "choices": choices}

    return app


@pytest.fixture
def openai_endpoint() -> Iterator[PlantedEndpoint]:
    endpoint = PlantedEndpoint()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(endpoint), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise AssertionError("the planted OpenAI endpoint did not start")
        time.sleep(0.02)
    endpoint.base_url = f"http://127.0.0.1:{port}/v1"
    yield endpoint
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class EvaluatorUnderTest:
    stub: Any
    service: Any
    artifacts: Path


@pytest.fixture
async def evaluator(tmp_path: Path) -> AsyncIterator[EvaluatorUnderTest]:
    from cotdistill.evaluator.server import build_server
    from cotdistill.evaluator.settings import EvaluatorSettings
    from cotdistill.v1 import evaluator_pb2_grpc

    settings = EvaluatorSettings(port=0, metrics_port=0, artifacts_dir=str(tmp_path / "artifacts"), torch_threads=1)
    service = await build_server(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    yield EvaluatorUnderTest(evaluator_pb2_grpc.EvaluatorServiceStub(channel), service, tmp_path / "artifacts")
    await channel.close()
    await service.stop(0)
    await asyncio.sleep(0)

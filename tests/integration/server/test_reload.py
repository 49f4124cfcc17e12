"""Checkpoint reload: a good checkpoint switches with requests in flight; a bad one is refused."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from pathlib import Path

import httpx

from tests.integration.conftest import ServiceProcess, wait_until
from tests.integration.server.conftest import API_KEY, MODEL, RunningServer, server_settings, start_server


async def _burst(server: RunningServer, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=60) as client:
        body = {"model": MODEL, "prompt": "Mia has 2 eggs. ###", "max_tokens": 32, "stream": False}
        return await asyncio.gather(*(client.post("/v1/completions", json=body) for _ in range(count)))


async def _reload_during_traffic(server: RunningServer, new_model: Path) -> tuple[list[httpx.Response], httpx.Response]:
    traffic = asyncio.create_task(_burst(server, 12))
    await asyncio.sleep(0.05)  # requests are in flight on the old model
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=60) as client:
        reloaded = await client.post("/admin/reload", json={"model": str(new_model)})
        after = await _burst(server, 4)
    return [*await traffic, *after], reloaded


def test_reload_switches_without_dropping_requests_and_refuses_bad_checkpoints(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    server = start_server(server_settings(tiny_models["student"], max_concurrent=8, max_queue=32))
    try:
        old_engine = server.app.state.holder.current.engine
        responses, reloaded = asyncio.run(_reload_during_traffic(server, tiny_models["teacher"]))
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["model"] == str(tiny_models["teacher"])
        assert [r.status_code for r in responses] == [200] * len(responses)
        with server.client() as http:
            assert http.get("/v1/models").json()["data"][0]["root"] == str(tiny_models["teacher"])
        assert old_engine._closed  # the old model was freed once its requests drained

        # A checkpoint that cannot load is refused; the current one keeps serving.
        broken = tmp_path / "broken"
        shutil.copytree(tiny_models["student"], broken)
        (broken / "model.safetensors").write_bytes(b"not a safetensors file")
        with server.client() as http:
            refusals = ((broken, 400, "checkpoint_refused"), (tmp_path / "missing", 404, "checkpoint_not_found"))
            for bad, status, code in refusals:
                r = http.post("/admin/reload", json={"model": str(bad)})
                assert r.status_code == status, r.text
                error = r.json()["error"]
                assert error["param"] == "model" and error["code"] == code
                assert str(bad) in error["message"]
            assert http.get("/v1/models").json()["data"][0]["root"] == str(tiny_models["teacher"])
            ok = http.post("/v1/completions", json={"model": MODEL, "prompt": "Sam", "max_tokens": 3})
            assert ok.status_code == 200
        # The missing one is refused before the loader runs (404): only the broken one counts.
        assert server.metric('cotdistill_server_model_reloads_total{outcome="refused"}') == 1
        assert server.metric('cotdistill_server_model_reloads_total{outcome="loaded"}') == 2
    finally:
        server.stop()


def test_sighup_reloads_the_configured_checkpoint(tiny_models: dict[str, Path], tmp_path: Path, run_service) -> None:  # type: ignore[no-untyped-def]
    """The real process (`cotdistill serve server`): SIGHUP reloads; a broken checkpoint is refused."""
    current = tmp_path / "current"
    current.symlink_to(tiny_models["student"], target_is_directory=True)
    service: ServiceProcess = run_service(
        "server", {"COTDISTILL_SERVER_MODEL": str(current), "COTDISTILL_SERVER_API_KEYS": API_KEY}
    )
    base = f"http://127.0.0.1:{service.port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def reloads(outcome: str) -> float:
        for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
            if line.startswith(f'cotdistill_server_model_reloads_total{{outcome="{outcome}"}}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    wait_until(ready, 90, "server ready", service)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    vocab_before = json.loads((tiny_models["student"] / "config.json").read_text())["vocab_size"]

    current.unlink()
    current.symlink_to(tiny_models["teacher"], target_is_directory=True)
    os.kill(service.proc.pid, signal.SIGHUP)
    wait_until(lambda: reloads("loaded") >= 2, 60, "SIGHUP reload", service)
    vocab_after = json.loads((tiny_models["teacher"] / "config.json").read_text())["vocab_size"]
    assert vocab_before != vocab_after
    token = vocab_after - 1  # valid only for the new (teacher) vocabulary
    r = httpx.post(f"{base}/v1/completions", headers=headers, json={"model": MODEL, "prompt": [token], "max_tokens": 2})
    assert r.status_code == 200, r.text

    current.unlink()
    current.symlink_to(tmp_path / "missing", target_is_directory=True)
    os.kill(service.proc.pid, signal.SIGHUP)
    wait_until(lambda: reloads("refused") >= 1, 30, "refused reload", service)
    assert ready()
    r = httpx.post(f"{base}/v1/completions", headers=headers, json={"model": MODEL, "prompt": "Tom", "max_tokens": 2})
    assert r.status_code == 200
    assert service.terminate() == 0, service.log()

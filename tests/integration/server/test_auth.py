"""API keys over real HTTP: 401 reveals nothing, key files work, open mode is explicit, CORS is off."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from tests.integration.server.conftest import API_KEY, MODEL, RunningServer, server_settings, start_server

ENDPOINTS = [
    ("GET", "/v1/models", None),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 1}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}),
    ("POST", "/v1/reason", {"question": "x"}),
    ("POST", "/admin/reload", {}),
]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": API_KEY}, {"Authorization": "Basic eDp5"}],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
def test_every_api_endpoint_needs_a_key_and_401_says_nothing_more(
    served: RunningServer, headers: dict[str, str]
) -> None:
    bodies = set()
    for method, path, body in ENDPOINTS:
        r = httpx.request(method, f"{served.base_url}{path}", json=body, headers=headers, timeout=30)
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert r.headers["WWW-Authenticate"] == "Bearer"
        bodies.add(r.text)
    assert len(bodies) == 1  # same answer whatever was wrong, on every endpoint
    assert "invalid_api_key" in bodies.pop()


def test_invalid_body_without_a_key_is_401_not_400(served: RunningServer) -> None:
    r = httpx.post(f"{served.base_url}/v1/completions", json={"temperature": 99})
    assert r.status_code == 401


def test_probes_and_metrics_need_no_key(served: RunningServer) -> None:
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(f"{served.base_url}{path}").status_code == 200


def test_cors_is_off_by_default(served: RunningServer) -> None:
    preflight = httpx.options(
        f"{served.base_url}/v1/models",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    r = httpx.get(f"{served.base_url}/v1/models", headers={**served.headers, "Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_keys_from_a_mounted_secret_file_and_cors_when_enabled(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    secret = tmp_path / "api-keys"
    secret.write_text("# rotated 2026-11\nfile-key-aaaaaaaaaaaaaaaa\n\nfile-key-bbbbbbbbbbbbbbbb\n")
    settings = server_settings(
        tiny_models["student"], api_keys=[], api_key_file=str(secret), cors_origins=["https://app.example"]
    )
    server = start_server(settings)
    try:
        for key in ("file-key-aaaaaaaaaaaaaaaa", "file-key-bbbbbbbbbbbbbbbb"):
            r = httpx.get(f"{server.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200
        r = httpx.get(f"{server.base_url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
        assert r.status_code == 401
        allowed = httpx.get(f"{server.base_url}/health", headers={"Origin": "https://app.example"}).headers.get(
            "access-control-allow-origin"
        )
        assert allowed == "https://app.example"
    finally:
        server.stop()


def test_open_mode_is_explicit_and_warned(tiny_models: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cotdistill.server.app"):
        server = start_server(server_settings(tiny_models["student"], api_keys=[], allow_unauthenticated=True))
    try:
        assert any("OPEN MODE" in rec.getMessage() for rec in caplog.records)
        assert httpx.get(f"{server.base_url}/v1/models").status_code == 200
    finally:
        server.stop()

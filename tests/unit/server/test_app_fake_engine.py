"""The HTTP layer against a fake engine (the narrow Engine interface): readiness, SSE, reload."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cotdistill.server.app import build_app
from cotdistill.server.engine.base import EngineLoadError, EngineStats, SamplingParams, StepOutput, TokenLogprob
from cotdistill.server.settings import ServerSettings

KEY = "unit-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


class FakeTokenizer:
    """Characters are tokens (code points mod 256); no special tokens."""

    chat_template = "fake"
    all_special_ids: tuple[int, ...] = ()

    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> str:
        return " ".join(m["content"] for m in messages)

    def decode(self, ids: list[int], **_: Any) -> str:
        return "".join(chr(t) for t in ids)

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return chr(token_id)


class FakeEngine:
    """Echoes the prompt's characters back, one per step; tokens are character codes."""

    backend = "fake"
    max_model_len = 512
    vocab_size = 256
    eos_token_id = None

    def __init__(self, path: str) -> None:
        self.model_path = path
        self.tokenizer = FakeTokenizer()
        self.closed = False
        self.gate: asyncio.Event | None = None

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) % 256 for c in text]

    async def score(self, prompts: Sequence[Sequence[int]], top_k_logprobs: int) -> list[list[TokenLogprob]]:
        return [[TokenLogprob(t, -1.0, (t,), (-1.0,)) for t in p[1:]] for p in prompts]

    def stats(self) -> EngineStats:
        return EngineStats(0, 0)

    async def generate(
        self, prompt_ids: Sequence[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[StepOutput]:
        for i in range(params.max_tokens):
            if self.gate is not None:
                await self.gate.wait()
            token = prompt_ids[i % len(prompt_ids)]
            last = i == params.max_tokens - 1
            lp = [TokenLogprob(token, -0.5, (token,), (-0.5,))] if params.logprobs is not None else None
            yield StepOutput(chr(token), [token], lp, "length" if last else None)

    async def close(self) -> None:
        self.closed = True


def make_app(loaded: asyncio.Event | None = None, root: Path | None = None, **overrides: Any):  # type: ignore[no-untyped-def]
    """An app serving ``ROOT/ckpt-a`` (ROOT also holds ckpt-b and ckpt-bad, which fails to load)."""
    engines: dict[str, FakeEngine] = {}
    root = root or Path(tempfile.mkdtemp(prefix="ckpts-"))
    for name in ("ckpt-a", "ckpt-b", "ckpt-bad"):
        (root / name).mkdir(parents=True, exist_ok=True)

    async def loader(path: str) -> FakeEngine:
        if loaded is not None:
            await loaded.wait()
        if "bad" in path:
            raise EngineLoadError(f"checkpoint {path!r} is broken")
        engines[Path(path).name] = FakeEngine(path)
        return engines[Path(path).name]

    settings = ServerSettings(model=str(root / "ckpt-a"), api_keys=[KEY], **overrides)
    return build_app(settings, loader=loader), engines


def test_ready_only_after_the_model_loaded_and_503_meanwhile() -> None:
    gate = asyncio.Event()
    app, _ = make_app(gate)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 503
        busy = client.post("/v1/completions", headers=AUTH, json={"model": "cotdistill-student", "prompt": "x"})
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "model_not_ready"
        assert "Retry-After" in busy.headers
        client.portal.call(gate.set)  # type: ignore[union-attr]
        for _ in range(200):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.01)
        assert client.get("/ready").json()["status"] == "ready"


def test_completion_and_sse_framing() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        body = {"model": "cotdistill-student", "prompt": "abc", "max_tokens": 4, "logprobs": 1}
        out = client.post("/v1/completions", headers=AUTH, json=body).json()
        assert out["choices"][0]["text"] == "abca" and out["usage"] == {
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "total_tokens": 7,
        }
        assert out["choices"][0]["logprobs"]["text_offset"] == [0, 1, 2, 3]
        with client.stream("POST", "/v1/completions", headers=AUTH, json={**body, "stream": True, "n": 2}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in r.iter_lines() if line]
        assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
        chunks = [json.loads(line[6:]) for line in lines[:-1]]
        for index in (0, 1):
            assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"][0]["index"] == index) == "abca"


def test_chat_uses_the_chat_template_and_names_bad_fields() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        msgs = [{"role": "user", "content": "hi"}]
        out = client.post(
            "/v1/chat/completions",
            headers=AUTH,
            json={"model": "cotdistill-student", "messages": msgs, "max_tokens": 2},
        ).json()
        assert out["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
        bad = client.post(
            "/v1/chat/completions", headers=AUTH, json={"model": "cotdistill-student", "messages": [{"role": "x"}]}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages[0].role"


def test_reload_switches_and_refuses_and_the_old_engine_closes_after_draining(tmp_path: Path) -> None:
    app, engines = make_app(root=tmp_path)
    with TestClient(app) as client:
        for _ in range(200):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.01)
        old = engines["ckpt-a"]
        old.gate = asyncio.Event()
        # A streamed request in flight on the old engine, blocked mid-generation.
        with client.stream(
            "POST",
            "/v1/completions",
            headers=AUTH,
            json={"model": "cotdistill-student", "prompt": "zz", "max_tokens": 3, "stream": True},
        ) as inflight:
            refused = client.post("/admin/reload", headers=AUTH, json={"model": str(tmp_path / "ckpt-bad")})
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "checkpoint_refused"
            switched = client.post("/admin/reload", headers=AUTH, json={"model": str(tmp_path / "ckpt-b")})
            assert switched.status_code == 200 and switched.json()["model"] == str(tmp_path / "ckpt-b")
            assert not old.closed  # still serving the request in flight
            client.portal.call(old.gate.set)  # type: ignore[union-attr]
            text = "".join(
                json.loads(line[6:])["choices"][0]["text"]
                for line in inflight.iter_lines()
                if line.startswith("data: {")
            )
        assert text == "zzz"
        for _ in range(200):
            if old.closed:
                break
            time.sleep(0.01)
        assert old.closed
        assert client.get("/v1/models", headers=AUTH).json()["data"][0]["root"] == str(tmp_path / "ckpt-b")


def test_reload_paths_are_confined_to_the_reload_roots(tmp_path: Path) -> None:
    # path_roots=[]: integration tests in the same session widen the roots through the environment
    app, engines = make_app(root=tmp_path / "ckpts", path_roots=[])
    with TestClient(app) as client:
        for path in ("/etc", "/proc/self", str(tmp_path / "ckpts" / ".." / "elsewhere"), "../../etc"):
            denied = client.post("/admin/reload", headers=AUTH, json={"model": path})
            assert denied.status_code == 403, (path, denied.text)
            error = denied.json()["error"]
            assert error["type"] == "permission_error" and error["param"] == "model"
            assert error["message"].startswith(f"model: {path} is outside the directories")
            assert "COTDISTILL_SERVER_PATH_ROOTS" in error["message"]
        missing = client.post("/admin/reload", headers=AUTH, json={"model": str(tmp_path / "ckpts" / "ckpt-z")})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "checkpoint_not_found"
        assert missing.json()["error"]["param"] == "model"
        assert set(engines) <= {"ckpt-a"}  # nothing outside the roots was handed to the loader


def test_a_configured_model_that_cannot_load_is_fatal_and_reported() -> None:
    async def loader(path: str) -> FakeEngine:
        raise EngineLoadError(f"checkpoint {path!r} is not a directory")

    app = build_app(ServerSettings(model="/nowhere", api_keys=[KEY]), loader=loader)
    reasons: list[str] = []
    app.state.on_fatal = reasons.append  # __main__ stops the process with exit status 1
    with TestClient(app) as client:
        for _ in range(200):
            if reasons:
                break
            time.sleep(0.01)
        ready = client.get("/ready")
        assert ready.status_code == 503 and "/nowhere" in ready.json()["detail"]
    assert reasons and "/nowhere" in reasons[0]


def test_chunked_body_over_the_limit_is_413() -> None:
    app, _ = make_app(max_body_bytes=4096)
    with TestClient(app) as client:
        chunks = iter([b'{"model": "cotdistill-student", "prompt": "', b"x" * 8192, b'"}'])
        r = client.post("/v1/completions", headers={**AUTH, "Content-Type": "application/json"}, content=chunks)
        assert r.status_code == 413 and r.json()["error"]["param"] == "body"

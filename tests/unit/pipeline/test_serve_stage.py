"""The serve stage: pick the run's chosen checkpoint and reload the model server with it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from rich.console import Console

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import NotFound, Unavailable
from cotdistill.pipeline.run_config import RunConfig
from cotdistill.pipeline.serve_stage import chosen_checkpoint, serve_stage
from cotdistill.pipeline.stages import STAGES


def write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def test_selection_wins_over_the_training_record(tmp_path: Path) -> None:
    write(tmp_path / "training" / "run.json", {"checkpoints": [{"step": "3", "path": "/c/step-3", "isBest": True}]})
    assert chosen_checkpoint(tmp_path) == "/c/step-3"
    write(tmp_path / "eval" / "selection.json", {"chosen": {"model": {"checkpoint_path": "/c/step-6"}}})
    assert chosen_checkpoint(tmp_path) == "/c/step-6"


def test_latest_checkpoint_when_none_is_marked_best(tmp_path: Path) -> None:
    write(tmp_path / "training" / "run.json", {"checkpoints": [{"path": "/c/step-1"}, {"path": "/c/step-2"}]})
    assert chosen_checkpoint(tmp_path) == "/c/step-2"


def test_nothing_to_serve_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="run the select"):
        chosen_checkpoint(tmp_path)


class _Reload(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, object], str | None]]] = []
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Reload.seen.append((self.path, body, self.headers.get("Authorization")))
        if _Reload.status == 200:
            payload = {"model": body["model"], "backend": "transformers", "loaded_in_s": 0.5}
        else:
            payload = {"error": {"message": "model: no checkpoint there", "type": "invalid_request_error"}}
        data = json.dumps(payload).encode()
        self.send_response(_Reload.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def reload_server() -> Iterator[str]:
    """A loopback HTTP endpoint standing in for the model server's /admin/reload (narrow interface)."""
    _Reload.seen, _Reload.status = [], 200
    httpd = HTTPServer(("127.0.0.1", 0), _Reload)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_stage_reloads_the_server_with_the_key(
    tmp_path: Path, reload_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COTDISTILL_API_KEY", "k" * 32)
    write(tmp_path / "eval" / "selection.json", {"chosen": {"model": {"checkpoint_path": "/c/step-6"}}})
    config = RunConfig.model_validate({"name": "r", "serving": {"url": reload_server}})
    serve_stage(config, ArtifactStore(tmp_path), Console(quiet=True))
    assert _Reload.seen == [("/admin/reload", {"model": "/c/step-6"}, "Bearer " + "k" * 32)]
    assert json.loads((tmp_path / "serving.json").read_text())["checkpoint"] == "/c/step-6"
    assert STAGES["serve"].run is serve_stage


def test_refused_reload_names_the_reason(tmp_path: Path, reload_server: str) -> None:
    _Reload.status = 400
    write(tmp_path / "eval" / "selection.json", {"chosen": {"model": {"checkpoint_path": "/nope"}}})
    config = RunConfig.model_validate({"name": "r", "serving": {"url": reload_server, "api_key_env": ""}})
    with pytest.raises(Unavailable, match=r"refused the reload \(400\): model: no checkpoint there"):
        serve_stage(config, ArtifactStore(tmp_path), Console(quiet=True))


def test_unreachable_server(tmp_path: Path) -> None:
    write(tmp_path / "eval" / "selection.json", {"chosen": {"model": {"checkpoint_path": "/c"}}})
    config = RunConfig.model_validate({"name": "r", "serving": {"url": "http://127.0.0.1:9", "timeout_s": 2}})
    with pytest.raises(Unavailable, match="cannot reach the model server"):
        serve_stage(config, ArtifactStore(tmp_path), Console(quiet=True))

"""The ``serve`` pipeline stage: switch the model server to the checkpoint the run selected.

It reads the choice from ``RUN/eval/selection.json`` (the ``select`` stage), or, when the run
selected nothing, the best checkpoint the ``train`` stage recorded in ``RUN/training/run.json``,
and asks the server to load it with ``POST /admin/reload`` (loaded beside the old model, switched
with no dropped requests; a checkpoint that fails to load is refused and the old one keeps
serving). The server must be able to read the checkpoint path (same machine or shared volume).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import InvalidArgument, NotFound, Unavailable
from cotdistill.pipeline.run_config import RunConfig


def chosen_checkpoint(run_dir: Path) -> str:
    """The checkpoint to serve: the selection, else the trainer's best (or latest) checkpoint."""
    selection = run_dir / "eval" / "selection.json"
    if selection.is_file():
        path = json.loads(selection.read_text()).get("chosen", {}).get("model", {}).get("checkpoint_path")
        if path:
            return str(path)
    record = run_dir / "training" / "run.json"
    if record.is_file():
        checkpoints = json.loads(record.read_text()).get("checkpoints", [])
        best = [c for c in checkpoints if c.get("isBest")] or checkpoints[-1:]
        if best and best[0].get("path"):
            return str(best[0]["path"])
    raise NotFound(f"nothing to serve in {run_dir}: run the select (or train) stage first")


def serve_stage(config: RunConfig, store: ArtifactStore, console: Console) -> None:
    """Pipeline stage ``serve``: reload the model server with the run's chosen checkpoint."""
    if not store.is_local:
        raise InvalidArgument("output_dir", "the serve stage reads the selection from a local run directory")
    checkpoint = chosen_checkpoint(Path(store.root))
    section = config.serving
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(section.api_key_env, "") if section.api_key_env else ""
    if key:
        headers["Authorization"] = f"Bearer {key}"
    with console.status(f"loading {checkpoint} into {section.url}"):
        status, body = _post_json(
            f"{section.url.rstrip('/')}/admin/reload", {"model": checkpoint}, headers, section.timeout_s, section.url
        )
    if status != 200:
        error = body.get("error")
        message = error.get("message", "") if isinstance(error, dict) else str(body)[:300]
        hint = f" (set {section.api_key_env})" if status == 401 else ""
        raise Unavailable(f"serving.url: the server refused the reload ({status}): {message}{hint}")
    console.print(
        f"[green]serving[/] {body.get('model', checkpoint)} at {section.url} "
        f"(loaded in {body.get('loaded_in_s', 0):.1f} s)"
    )
    store.write_json({"checkpoint": checkpoint, "url": section.url, "reload": body}, "serving.json")


def _post_json(
    url: str, payload: dict[str, Any], headers: dict[str, str], timeout_s: float, base: str
) -> tuple[int, dict[str, Any]]:
    """POST JSON with the standard library (the shared package stays free of HTTP client deps)."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), _json_or_text(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), _json_or_text(err.read())
    except (urllib.error.URLError, OSError) as err:
        raise Unavailable(f"serving.url: cannot reach the model server at {base}: {err}") from None


def _json_or_text(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {"text": data.decode(errors="replace")[:300]}
    return value if isinstance(value, dict) else {"value": value}

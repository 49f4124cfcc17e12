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
from pathlib import Path

import httpx
from rich.console import Console

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import InvalidArgument, NotFound, Unavailable
from cotdistill.common.run_config import RunConfig


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
    headers = {}
    key = os.environ.get(section.api_key_env, "") if section.api_key_env else ""
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = f"{section.url.rstrip('/')}/admin/reload"
    with console.status(f"loading {checkpoint} into {section.url}"):
        try:
            response = httpx.post(url, json={"model": checkpoint}, headers=headers, timeout=section.timeout_s)
        except httpx.HTTPError as err:
            raise Unavailable(f"serving.url: cannot reach the model server at {section.url}: {err}") from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        hint = f" (set {section.api_key_env})" if response.status_code == 401 else ""
        raise Unavailable(f"serving.url: the server refused the reload ({response.status_code}): {message}{hint}")
    body = response.json()
    console.print(
        f"[green]serving[/] {body.get('model', checkpoint)} at {section.url} "
        f"(loaded in {body.get('loaded_in_s', 0):.1f} s)"
    )
    store.write_json({"checkpoint": checkpoint, "url": section.url, "reload": body}, "serving.json")

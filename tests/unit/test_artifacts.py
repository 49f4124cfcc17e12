"""Artifact store: atomic writes, staging directories, local paths and fsspec URIs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cotdistill.common.artifacts import ArtifactStore


def test_write_and_read_json(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "runs")
    path = store.write_json({"b": 1, "a": [1, 2]}, "demo", "samples", "manifest.json")
    assert Path(path).is_file()
    assert store.read_json("demo", "samples", "manifest.json") == {"a": [1, 2], "b": 1}
    assert store.list("demo", "samples") == ["demo/samples/manifest.json"]


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)

    store.write_text("old", "x.txt")
    with pytest.raises(TypeError):
        store.write_bytes(object(), "x.txt")  # type: ignore[arg-type]
    assert store.read_text("x.txt") == "old"
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")] == []


def test_staging_dir_is_renamed_into_place_only_on_success(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with store.staging_dir("checkpoints", "step-1") as stage:
        Path(stage, "model.safetensors").write_bytes(b"w")
        assert not store.exists("checkpoints", "step-1")
    assert store.exists("checkpoints", "step-1", "model.safetensors")
    with pytest.raises(RuntimeError), store.staging_dir("checkpoints", "step-2") as stage:
        Path(stage, "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed")
    assert not store.exists("checkpoints", "step-2")
    assert store.list("checkpoints") == ["checkpoints/step-1"]


def test_staging_dir_replaces_an_older_copy(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    for content in (b"v1", b"v2"):
        with store.staging_dir("ckpt") as stage:
            Path(stage, "w").write_bytes(content)
    assert store.read_bytes("ckpt", "w") == b"v2"
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_paths_cannot_escape_the_root(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(ValueError, match="stay under the root"):
        store.path("..", "etc")
    with pytest.raises(ValueError, match="relative"):
        store.path("/etc/passwd")


def test_fsspec_memory_uri() -> None:
    store = ArtifactStore("memory://bucket/run")
    assert not store.is_local
    store.write_json({"ok": True}, "eval", "result.json")
    assert store.read_json("eval", "result.json") == {"ok": True}
    assert store.uri("eval", "result.json") == "memory:///bucket/run/eval/result.json"

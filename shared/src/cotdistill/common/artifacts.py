"""Artifact store: a local directory by default, any fsspec URI (``s3://``, ``gs://``...) otherwise.

Writes are atomic: a reader never sees half a file. Locally that is a temporary file in the
same directory and ``os.replace``; object stores make each upload atomic by themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


class ArtifactStore:
    """Files under one root, addressed by relative POSIX paths."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root_uri = str(root)
        fs, path = fsspec.core.url_to_fs(self.root_uri)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = path
        self.is_local = isinstance(fs, LocalFileSystem)
        if self.is_local:
            self.root = str(Path(path).resolve())

    def path(self, *parts: str) -> str:
        """Full path of ``parts`` under the root (a local path or the fsspec path)."""
        for part in parts:
            if part.startswith("/") or ".." in Path(part).parts:
                raise ValueError(f"artifact path {part!r} must be relative and stay under the root")
        return posixpath.join(self.root, *parts)

    def uri(self, *parts: str) -> str:
        """URI of ``parts`` suitable to hand to another process (keeps the protocol)."""
        if self.is_local:
            return self.path(*parts)
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{self.path(*parts)}"

    def exists(self, *parts: str) -> bool:
        return bool(self.fs.exists(self.path(*parts)))

    def makedirs(self, *parts: str) -> str:
        target = self.path(*parts)
        self.fs.makedirs(target, exist_ok=True)
        return target

    def list(self, *parts: str, pattern: str = "*") -> list[str]:
        """Relative paths of entries matching ``pattern`` under ``parts``, sorted."""
        base = self.path(*parts)
        found = self.fs.glob(posixpath.join(base, pattern))
        return sorted(posixpath.relpath(str(p), self.root) for p in found)

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open(self.path(*parts), "rb") as handle:
            data: bytes = handle.read()
        return data

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode("utf-8")

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """Write ``data`` atomically; returns the full path."""
        target = self.path(*parts)
        if self.is_local:
            directory = os.path.dirname(target)
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        else:
            self.fs.pipe_file(target, data)
        return target

    def write_text(self, text: str, *parts: str) -> str:
        return self.write_bytes(text.encode("utf-8"), *parts)

    def write_json(self, value: Any, *parts: str) -> str:
        return self.write_bytes((json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8"), *parts)

    @contextlib.contextmanager
    def staging_dir(self, *parts: str) -> Iterator[str]:
        """A local directory whose contents become ``parts`` atomically on success.

        Used for checkpoints: files are written into a temporary sibling directory, which is
        renamed into place only when complete, so a crash never leaves a half checkpoint.
        """
        if not self.is_local:
            with tempfile.TemporaryDirectory(prefix="cotdistill-stage-") as tmp:
                yield tmp
                self.fs.put(tmp + "/", self.path(*parts), recursive=True)
            return
        target = self.path(*parts)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
        try:
            yield tmp
            if os.path.exists(target):
                # Replace an older copy: move it aside first so the rename stays atomic.
                old = tempfile.mkdtemp(prefix=".old-", dir=parent)
                os.replace(target, os.path.join(old, "x"))
                os.replace(tmp, target)
                _rmtree(old)
            else:
                os.replace(tmp, target)
        except BaseException:
            _rmtree(tmp)
            raise


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)

"""Paths that callers name are confined to directories the operator configured.

A request may name files on the service's machine: a checkpoint to evaluate, a dataset file,
training data, a student model, a checkpoint to reload, an output directory. Each of them goes
through :meth:`PathRoots.confine` before anything opens it, so no request reaches ``/etc``,
``/proc/self`` or another tenant's files: a path outside the roots is PERMISSION_DENIED naming
the request field (and the setting that adds roots), whatever the file is.

The check is on the *resolved* path (``..`` and symbolic links followed), so neither
``root/../etc`` nor a link inside a root that points out of it escapes. Files *inside* a root
are trusted as they are: a directory a root holds may itself contain links (a Hugging Face cache
does), which the operator put there. Relative paths resolve against the service's working
directory, as before.

Each service's roots come from its settings (``cotdistill.common.settings.CallerPathSettings``):
the artifact directory, the models cache, the datasets folder, plus
``COTDISTILL_<SERVICE>_PATH_ROOTS``. A registry model name is not a path: it resolves into the
models cache (``cotdistill.common.models.resolve_model``), so callers pass it through unconfined.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cotdistill.common.errors import InvalidArgument, PermissionDenied


def _resolve_local(value: str) -> str:
    return str(Path(value.removeprefix("file://")).expanduser().resolve())


def _is_uri(value: str) -> bool:
    return "://" in value and not value.startswith("file://")


@dataclass(frozen=True)
class PathRoots:
    """Directories (or object-store URI prefixes) a service reads or writes on a caller's behalf.

    ``setting`` names the environment variable that adds roots, for the error message.
    """

    roots: tuple[str, ...]
    setting: str

    @classmethod
    def of(cls, roots: Iterable[str | os.PathLike[str]], setting: str) -> PathRoots:
        """Roots from settings values; empty ones are skipped, local ones resolved."""
        out: list[str] = []
        for raw in roots:
            text = str(raw).strip()
            if not text:
                continue
            root = text.rstrip("/") if _is_uri(text) else _resolve_local(text)
            if root not in out:
                out.append(root)
        return cls(tuple(out), setting)

    def confine(self, value: str, field: str) -> str:
        """``value`` resolved, when it lies under a root.

        Raises:
            InvalidArgument: ``value`` is empty or not a path at all.
            PermissionDenied: ``value`` resolves outside every root.
        """
        if not value.strip():
            raise InvalidArgument(field, "empty path")
        if "\x00" in value:
            raise InvalidArgument(field, "a path cannot contain a NUL character")
        if _is_uri(value):
            resolved = self._confine_uri(value)
        else:
            # realpath follows every link that exists; the rest is normalized lexically.
            resolved = os.path.realpath(value.removeprefix("file://"))
            if not any(resolved == root or Path(resolved).is_relative_to(root) for root in self._local()):
                resolved = ""
        if not resolved:
            raise PermissionDenied(
                field,
                f"{value} is outside the directories this service may use for requests "
                f"({', '.join(self.roots) or 'none configured'}); the operator can add one with {self.setting}",
            )
        return resolved

    def _local(self) -> list[str]:
        return [r for r in self.roots if not _is_uri(r)]

    def _confine_uri(self, value: str) -> str:
        scheme, _, rest = value.partition("://")
        normalized = f"{scheme}://{posixpath.normpath('/' + rest).lstrip('/')}"
        if ".." in rest.split("/"):
            return ""  # object stores do not resolve "..": refuse rather than guess
        for root in self.roots:
            if _is_uri(root) and (normalized == root or normalized.startswith(root + "/")):
                return normalized
        return ""

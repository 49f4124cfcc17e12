"""Low-level readers of the original dataset file formats, cached per process.

Every reader raises :class:`MalformedDataError` naming ``file:line`` (JSON, JSONL, TSV) or the
record (``file[index]``) and the field, so a broken file is fixed in one look.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from cotdistill.common.tasks.errors import MalformedDataError


def _stamp(path: Path) -> tuple[str, float, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MalformedDataError(path, None, None, "file not found") from None
    return str(path), st.st_mtime, st.st_size


def read_json(path: str | os.PathLike[str]) -> Any:
    """A parsed JSON document (cached by path, mtime and size; treat the result as read-only)."""
    return _read_json(*_stamp(Path(path)))


@functools.lru_cache(maxsize=64)
def _read_json(path: str, _mtime: float, _size: int) -> Any:
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MalformedDataError(path, err.lineno, None, f"invalid JSON: {err.msg} (column {err.colno})") from None


def read_jsonl(path: str | os.PathLike[str]) -> tuple[tuple[int, dict[str, Any]], ...]:
    """(1-based line number, object) for each non-blank line of a JSON Lines file (cached)."""
    return _read_jsonl(*_stamp(Path(path)))


@functools.lru_cache(maxsize=64)
def _read_jsonl(path: str, _mtime: float, _size: int) -> tuple[tuple[int, dict[str, Any]], ...]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise MalformedDataError(path, lineno, None, f"invalid JSON: {err.msg} (column {err.colno})") from None
            if not isinstance(obj, dict):
                raise MalformedDataError(path, lineno, None, f"expected a JSON object, got {type(obj).__name__}")
            rows.append((lineno, obj))
    return tuple(rows)


def read_tsv(path: str | os.PathLike[str], columns: int) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """(line number, fields) of a header-less TSV with exactly ``columns`` fields per line.

    Flan's CoT files escape newlines inside a field as the two characters ``\\n``; they are
    turned back into newlines.
    """
    return _read_tsv(*_stamp(Path(path)), columns)


@functools.lru_cache(maxsize=32)
def _read_tsv(path: str, _mtime: float, _size: int, columns: int) -> tuple[tuple[int, tuple[str, ...]], ...]:
    rows = []
    with open(path, encoding="utf-8", newline="\n") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != columns:
                raise MalformedDataError(
                    path, lineno, None, f"expected {columns} tab-separated fields, got {len(fields)}"
                )
            rows.append((lineno, tuple(f.replace("\\n", "\n") for f in fields)))
    return tuple(rows)


def require(
    record: Any, field: str, path: str | os.PathLike[str], where: int | str, kind: type | tuple[type, ...] = str
) -> Any:
    """``record[field]``, checked for presence and type; raises MalformedDataError naming both."""
    if not isinstance(record, dict):
        raise MalformedDataError(path, where, None, f"expected an object, got {type(record).__name__}")
    if field not in record or record[field] is None:
        raise MalformedDataError(path, where, field, "missing field")
    value = record[field]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise MalformedDataError(path, where, field, f"expected {names}, got {type(value).__name__}")
    return value


def json_list(path: str | os.PathLike[str], key: str | None = None) -> list[Any]:
    """A JSON document that is a list, or a mapping whose ``key`` is a list (``{"examples": [...]}``)."""
    doc = read_json(path)
    if key is not None:
        if not isinstance(doc, dict) or key not in doc:
            raise MalformedDataError(path, 1, key, "missing top-level field")
        doc = doc[key]
    if not isinstance(doc, list):
        raise MalformedDataError(path, 1, key, f"expected a JSON list, got {type(doc).__name__}")
    return doc

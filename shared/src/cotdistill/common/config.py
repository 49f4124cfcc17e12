"""YAML recipes validated into typed config, with ``key=value`` overrides.

Errors name the key and the file:line where it was set (or the override that set it), e.g.::

    configs/demo.yaml:14: sampling.temperature: Input should be less than or equal to 10
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cotdistill.common.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

KeyPath = tuple[str | int, ...]


def _line_index(node: yaml.Node, prefix: KeyPath, out: dict[KeyPath, int]) -> None:
    """Record the 1-based line of every key path in a composed YAML node tree."""
    out[prefix] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            out[(*prefix, key)] = key_node.start_mark.line + 1
            _line_index(value_node, (*prefix, key), out)
            # The key's own line is more useful than the value's for a nested mapping.
            out[(*prefix, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*prefix, i), out)


def load_yaml(path: str | Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """Parse a YAML mapping and index the line of each key. Raises ConfigError with file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"invalid YAML: {err.problem}", source=f"{path}{line}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys", source=f"{path}:1")
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _line_index(node, (), lines)
    return data, lines


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[KeyPath, str]:
    """Apply ``a.b.c=value`` overrides in place (values parsed as YAML scalars/lists).

    Returns, for each overridden key path, the override text, so errors can point at it.
    """
    origins: dict[KeyPath, str] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.path=value")
        parts = key.strip().split(".")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        cursor: Any = data
        for depth, part in enumerate(parts[:-1]):
            nxt = cursor.get(part) if isinstance(cursor, dict) else None
            if nxt is None:
                nxt = {}
                cursor[part] = nxt
            if not isinstance(nxt, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"cannot set {key}: {where} is not a mapping", key=key)
            cursor = nxt
        cursor[parts[-1]] = value
        origins[tuple(parts)] = f"override {item!r}"
    return origins


def _locate(loc: KeyPath, lines: dict[KeyPath, int], origins: dict[KeyPath, str], source: str) -> str:
    # An override of a key or of any section above it replaced what the file said there.
    for n in range(len(loc), 0, -1):
        if tuple(loc[:n]) in origins:
            return origins[tuple(loc[:n])]
    for n in range(len(loc), 0, -1):
        if tuple(loc[:n]) in lines:
            return f"{source}:{lines[tuple(loc[:n])]}"
    return source


def validate(
    model: type[M],
    data: dict[str, Any],
    *,
    source: str = "<config>",
    lines: dict[KeyPath, int] | None = None,
    origins: dict[KeyPath, str] | None = None,
) -> M:
    """Validate ``data`` into ``model``; the first error names its key and where it was set."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        messages = []
        for e in err.errors():
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            if e["type"] == "moved_key":  # a section's validator names the key inside it
                loc = (*loc, str(e["ctx"]["key"]))
            key = ".".join(str(p) for p in loc) or "(top level)"
            where = _locate(loc, lines or {}, origins or {}, source)
            messages.append(f"{where}: {key}: {e['msg']}")
        first = messages[0]
        more = f" (and {len(messages) - 1} more: " + "; ".join(messages[1:4]) + ")" if len(messages) > 1 else ""
        raise ConfigError(first + more) from None


def load_config(model: type[M], path: str | Path, overrides: Sequence[str] = ()) -> M:
    """Load a YAML recipe, apply overrides and validate it into ``model``."""
    return load_located_config(model, path, overrides)[0]


Locator = Callable[[KeyPath], str]


def load_located_config(model: type[M], path: str | Path, overrides: Sequence[str] = ()) -> tuple[M, Locator]:
    """Like :func:`load_config`, plus where each key was set (``file:line`` or ``override '...'``),
    for checks that run after validation (a dataset name that does not exist, ...)."""
    data, lines = load_yaml(path)
    origins = apply_overrides(data, overrides)
    config = validate(model, data, source=str(path), lines=lines, origins=origins)
    return config, lambda loc: _locate(loc, lines, origins, str(path))


def dump_config(config: BaseModel) -> str:
    """The resolved config as YAML (written to ``runs/<run>/config.yaml``)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)

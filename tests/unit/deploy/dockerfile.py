"""A small Dockerfile reader for the image convention tests (no Docker engine here).

Follows the Dockerfile reference: `\\` continues a line, `#` starts a comment line, ARGs declared
before the first FROM are in scope for FROM lines, `FROM image AS name` starts a stage.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str  # upper case, e.g. "RUN"
    args: str  # the rest of the (joined) line
    line: int  # 1-based line of the instruction's start

    def exec_form(self) -> list[str] | None:
        """The JSON-array form of CMD/ENTRYPOINT/HEALTHCHECK CMD, or None for the shell form."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.split("CMD", 1)[1] if "CMD" in text else ""
        text = text.strip()
        return list(json.loads(text)) if text.startswith("[") else None


@dataclass
class Stage:
    name: str
    base: str  # with global ARG defaults substituted
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs set in this stage."""
        out: dict[str, str] = {}
        for inst in self.all("ENV"):
            for token in shlex.split(inst.args):
                key, _, value = token.partition("=")
                out[key] = value
        return out

    def labels(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for inst in self.all("LABEL"):
            for token in shlex.split(inst.args):
                key, _, value = token.partition("=")
                out[key] = value
        return out


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def parse(path: Path) -> Dockerfile:
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):  # comment lines inside a continuation are dropped
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, text in logical:
        keyword, _, args = text.partition(" ")
        inst = Instruction(keyword.upper(), args.strip(), line)
        if inst.keyword == "ARG" and not stages:
            name, _, default = inst.args.partition("=")
            global_args[name] = default
        elif inst.keyword == "FROM":
            parts = inst.args.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args.get(m.group(1) or m.group(2), ""), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, base))
        elif stages:
            stages[-1].instructions.append(inst)
    return Dockerfile(path, global_args, stages)


def dockerignore_allows(patterns: list[str], relpath: str) -> bool:
    """Whether `relpath` is sent in the build context (last matching pattern wins; `!` re-includes).

    A pattern also matches everything under a matching directory, like Docker's matcher.
    """
    allowed = True
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = _glob_regex(pattern)
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            allowed = negate
    return allowed


def _glob_regex(pattern: str) -> str:
    """Go filepath.Match syntax plus Docker's `**` (any number of directories)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out

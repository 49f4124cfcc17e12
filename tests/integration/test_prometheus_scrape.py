"""A real Prometheus server scrapes a service's /metrics and answers queries about it."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from cotdistill.common.grpc_server import create_server
from cotdistill.common.settings import ServiceSettings
from tests.conftest import free_port
from tests.integration.conftest import tool
from tests.integration.test_grpc_frame import _register


def query(port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        return list(json.load(response)["data"]["result"])


async def test_prometheus_scrapes_the_teacher(tmp_path: Path) -> None:
    prometheus = tool("prometheus")
    service = await create_server("teacher", ServiceSettings(port=0, metrics_port=0), _register)
    await service.set_serving(True)
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: teacher\n    static_configs: [{{targets: ['127.0.0.1:{service.metrics_port}']}}]\n"
    )
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, result = time.monotonic() + 30, []
        while time.monotonic() < deadline and not result:
            time.sleep(0.5)
            try:
                result = query(prom_port, 'cotdistill_service_ready{service="teacher"}')
            except OSError:
                continue
        assert result, "Prometheus never returned the teacher's readiness series"
        assert result[0]["value"][1] == "1"  # type: ignore[index]
        up = query(prom_port, 'up{job="teacher"}')
        assert up and up[0]["value"][1] == "1"  # type: ignore[index]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        await service.stop(0)

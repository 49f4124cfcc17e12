"""Every metric the Grafana dashboard, the alert rules and the KEDA trigger query is one the
services really export: the four services run as real processes (`cotdistill serve X`, tiny
models), answer their container health check (deploy/healthcheck.py, the images' HEALTHCHECK,
which is also the first gRPC/HTTP traffic a probe sends), and their /metrics is parsed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ServiceProcess, wait_until
from tests.unit.deploy.chart import (
    alert_queries,
    dashboard_queries,
    metric_names,
    of_kind,
    profile_values,
    render,
)

REPO = Path(__file__).resolve().parents[2]
HEALTHCHECK = REPO / "deploy" / "healthcheck.py"
API_KEY = "dashboard-test-key-0123456789abcdef"
# Series Prometheus itself creates for every target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Labels Prometheus attaches from the target (ServiceMonitor/PodMonitor, compose static labels).
TARGET_LABELS = {
    "namespace", "pod", "container", "endpoint", "instance", "job",
    "app_kubernetes_io_part_of", "app_kubernetes_io_component",
}  # fmt: skip


def _metrics_url(service: ServiceProcess) -> str:
    port = service.port if service.name == "server" else service.metrics_port
    return f"http://127.0.0.1:{port}/metrics"


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return None


def _healthy(service: ServiceProcess) -> bool:
    env = {"PATH": "/usr/bin:/bin", f"COTDISTILL_{service.name.upper()}_PORT": str(service.port)}
    result = subprocess.run(
        [sys.executable, str(HEALTHCHECK), service.name], capture_output=True, text=True, timeout=30, env=env
    )
    return result.returncode == 0


def _sample_labels(text: str) -> dict[str, set[str]]:
    """Sample name -> the label names it carries in a /metrics exposition."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def _matcher_labels(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names in its {...} matchers) for each selector of a PromQL expression."""
    return [
        (m.group(1), {lm.group(1) for lm in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", m.group(2))})
        for m in re.finditer(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", expr)
    ]


def test_dashboard_alert_and_keda_queries_use_only_exported_metrics(
    run_service: Callable[..., ServiceProcess], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    fast_stop = {
        f"COTDISTILL_{name.upper()}_GRACE_PERIOD_S": "1" for name in ("teacher", "trainer", "evaluator", "server")
    }
    services = [
        run_service(
            "teacher",
            {
                **fast_stop,
                "COTDISTILL_TEACHER_MODEL": str(tiny_models["teacher"]),
                "COTDISTILL_TEACHER_BACKEND": "transformers",
                "COTDISTILL_TEACHER_DEVICE": "cpu",
            },
        ),
        run_service("trainer", fast_stop),
        run_service("evaluator", fast_stop),
        run_service(
            "server",
            {
                **fast_stop,
                "COTDISTILL_SERVER_MODEL": str(tiny_models["student"]),
                "COTDISTILL_SERVER_BACKEND": "transformers",
                "COTDISTILL_SERVER_API_KEYS": API_KEY,
            },
        ),
    ]
    exported: dict[str, set[str]] = {name: set() for name in SYNTHETIC}
    for service in services:
        # The image's HEALTHCHECK passes once the service is ready (model loaded).
        wait_until(lambda s=service: _healthy(s), 90, f"{service.name} healthcheck", service)
        text = _get(_metrics_url(service))
        assert text, f"{service.name}: no /metrics"
        for name, labels in _sample_labels(text).items():
            exported.setdefault(name, set()).update(labels)

    keda = of_kind(render(profile_values("full")), "ScaledObject")[0]["spec"]["triggers"][0]["metadata"]["query"]
    queries = [*dashboard_queries(), *alert_queries(), ("KEDA trigger", keda)]
    missing = sorted(
        {f"{where}: {name}" for where, expr in queries for name in metric_names(expr) if name not in exported}
    )
    assert not missing, "queries name metrics no service exports:\n" + "\n".join(missing)
    unknown_labels = sorted(
        f"{where}: {name}{{{', '.join(sorted(labels - exported[name] - TARGET_LABELS))}}}"
        for where, expr in queries
        for name, labels in _matcher_labels(expr)
        if labels - exported[name] - TARGET_LABELS
    )
    assert not unknown_labels, "queries filter on labels the metrics do not have:\n" + "\n".join(unknown_labels)
    # The compose Prometheus scrapes the same names: its rules file is the chart's.
    compose_rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert {r["alert"] for g in compose_rules["groups"] for r in g["rules"]} == {name for name, _ in alert_queries()}

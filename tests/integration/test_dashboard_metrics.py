"""The deployment's checks against the four services running as real processes (`cotdistill
serve X`, tiny models), once they answer their container health check (deploy/healthcheck.py,
the images' HEALTHCHECK, which is also the first gRPC/HTTP traffic a probe sends):

* every metric the Grafana dashboard, the alert rules and the KEDA triggers query is one the
  services (or the pipeline driver, for the sampling backlog) really export;
* the chart's `helm test` script (charts/cotdistill/files/chart_test.py) passes against each
  service: health plus one real call (teacher Info, trainer ListRuns, evaluator Evaluate of the
  server over HTTP, server /v1/models and a completion), and fails on a service that is down.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.integration.conftest import ServiceProcess, start_service, wait_until
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


@pytest.fixture(scope="module")
def stack(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServiceProcess]]:
    tmp = tmp_path_factory.mktemp("stack")
    fast_stop = {
        f"COTDISTILL_{name.upper()}_GRACE_PERIOD_S": "1" for name in ("teacher", "trainer", "evaluator", "server")
    }
    teacher = {
        "COTDISTILL_TEACHER_MODEL": str(tiny_models["teacher"]),
        "COTDISTILL_TEACHER_BACKEND": "transformers",
        "COTDISTILL_TEACHER_DEVICE": "cpu",
    }
    server = {
        "COTDISTILL_SERVER_MODEL": str(tiny_models["student"]),
        "COTDISTILL_SERVER_BACKEND": "transformers",
        "COTDISTILL_SERVER_API_KEYS": API_KEY,
    }
    services = [
        start_service("teacher", tmp, {**fast_stop, **teacher}),
        start_service("trainer", tmp, fast_stop),
        # The chart gives the evaluator the server's key as COTDISTILL_API_KEY (helm test evaluates the server).
        start_service("evaluator", tmp, {**fast_stop, "COTDISTILL_API_KEY": API_KEY}),
        start_service("server", tmp, {**fast_stop, **server}),
    ]
    try:
        for service in services:
            # The image's HEALTHCHECK passes once the service is ready (model loaded).
            wait_until(lambda s=service: _healthy(s), 90, f"{service.name} healthcheck", service)
        yield services
    finally:
        for service in services:
            service.terminate()


def test_dashboard_alert_and_keda_queries_use_only_exported_metrics(stack: list[ServiceProcess]) -> None:
    from prometheus_client import generate_latest

    from cotdistill.common.metrics import new_registry
    from cotdistill.pipeline.sampling.metrics import SamplingMetrics

    exported: dict[str, set[str]] = {name: set() for name in SYNTHETIC}
    # The pipeline driver's registry (the sampling backlog KEDA wakes the teacher on).
    driver = SamplingMetrics(new_registry(), "r")
    driver.planned(4, 4)
    texts = [generate_latest(driver.registry).decode()]
    for service in stack:
        text = _get(_metrics_url(service))
        assert text, f"{service.name}: no /metrics"
        texts.append(text)
    for text in texts:
        for name, labels in _sample_labels(text).items():
            exported.setdefault(name, set()).update(labels)

    triggers = of_kind(render(profile_values("full")), "ScaledObject")[0]["spec"]["triggers"]
    keda = [(f"KEDA trigger {t['name']}", t["metadata"]["query"]) for t in triggers]
    queries = [*dashboard_queries(), *alert_queries(), *keda]
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


CHART_TEST = REPO / "charts" / "cotdistill" / "files" / "chart_test.py"


def _chart_test(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHART_TEST), *args, "--attempts", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_the_helm_test_script_calls_each_service(stack: list[ServiceProcess]) -> None:
    by_name = {s.name: s for s in stack}
    server_url = f"http://{by_name['server'].address}"
    calls = {
        "teacher": ["--address", by_name["teacher"].address],
        "trainer": ["--address", by_name["trainer"].address],
        "evaluator": ["--address", by_name["evaluator"].address, "--server-url", server_url,
                      "--model", "cotdistill-student", "--api-key-env", "COTDISTILL_API_KEY",
                      "--output-dir", str(by_name["evaluator"].log_path.parent / "helm-test")],
        "server": ["--url", server_url, "--model", "cotdistill-student"],
    }  # fmt: skip
    expected = {
        "teacher": "ok: Info: model",
        "trainer": "ok: ListRuns:",
        "evaluator": "ok: Evaluate: synthetic_arithmetic/ft_cot",
        "server": "ok: /v1/completions:",
    }
    for component, args in calls.items():
        done = _chart_test(component, *args, env={"COTDISTILL_API_KEY": API_KEY})
        assert done.returncode == 0, f"{component}: {done.stdout}{done.stderr}"
        assert "SERVING" in done.stdout or component == "server", done.stdout
        assert expected[component] in done.stdout, done.stdout
    # A wrong key, and a service that is not there, fail the test pod with one line, no traceback.
    refused = _chart_test("server", *calls["server"], env={"COTDISTILL_API_KEY": "wrong-key-0123456789abcdef"})
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and "Traceback" not in refused.stderr
    down = _chart_test("trainer", "--address", f"127.0.0.1:{free_port()}")
    assert down.returncode == 1 and down.stderr.startswith("trainer: FAILED") and "Traceback" not in down.stderr

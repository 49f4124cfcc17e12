"""Each service starts with `cotdistill serve X` and answers real clients: grpcurl and curl."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import ServiceProcess, tool, wait_until

GRPC_SERVICES = {
    "teacher": ("cotdistill.v1.TeacherService", "Info"),
    "trainer": ("cotdistill.v1.TrainerService", "ListRuns"),
    "evaluator": ("cotdistill.v1.EvaluatorService", "Select"),
}


def service_env(name: str, tmp: Path, models: dict[str, Path]) -> dict[str, str]:
    """What each service needs to start for real on this machine."""
    if name == "teacher":
        return {"COTDISTILL_TEACHER_MODEL": str(models["teacher"]), "COTDISTILL_TEACHER_BACKEND": "transformers"}
    if name == "server":
        return {"COTDISTILL_SERVER_MODEL": str(models["student"]), "COTDISTILL_SERVER_ALLOW_UNAUTHENTICATED": "true"}
    return {}


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("grpcurl"), "-plaintext", "-max-time", "10", *args], capture_output=True, text=True, check=False
    )


def curl(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("curl"), "-sS", "-w", "\n%{http_code}", url], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("name", sorted(GRPC_SERVICES))
def test_grpc_service_health_reflection_and_shutdown(
    name: str, run_service: Callable[..., ServiceProcess], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    full_name, domain_rpc = GRPC_SERVICES[name]
    service = run_service(name, service_env(name, tmp_path, tiny_models))

    def serving() -> bool:
        result = grpcurl(service.address, "grpc.health.v1.Health/Check")
        return result.returncode == 0 and json.loads(result.stdout)["status"] == "SERVING"

    wait_until(serving, 60, f"{name} health SERVING", service)
    per_service = grpcurl("-d", json.dumps({"service": full_name}), service.address, "grpc.health.v1.Health/Check")
    assert json.loads(per_service.stdout)["status"] == "SERVING", per_service.stderr

    listed = grpcurl(service.address, "list").stdout.split()
    assert full_name in listed and "grpc.health.v1.Health" in listed

    described = grpcurl(service.address, "describe", full_name)
    assert f"rpc {domain_rpc}" in described.stdout

    domain = grpcurl(service.address, f"{full_name}/{domain_rpc}")
    if name == "evaluator":  # an empty Select is refused, naming the field
        assert "InvalidArgument" in domain.stderr, domain.stderr
        assert "candidates" in domain.stderr
    else:
        assert domain.returncode == 0, domain.stderr
    if name == "teacher":
        assert json.loads(domain.stdout)["backend"] == "transformers"

    metrics = curl(f"http://127.0.0.1:{service.metrics_port}/metrics")
    assert metrics.stdout.endswith("200")
    assert f'cotdistill_service_ready{{service="{name}"}} 1.0' in metrics.stdout

    assert service.terminate() == 0, service.log()
    assert "shutdown requested" in service.log()


def test_http_server_health_ready_metrics(
    run_service: Callable[..., ServiceProcess], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    service = run_service("server", service_env("server", tmp_path, tiny_models))
    base = f"http://127.0.0.1:{service.port}"
    wait_until(lambda: curl(f"{base}/health").stdout.endswith("200"), 60, "server /health", service)
    assert json.loads(curl(f"{base}/health").stdout.rsplit("\n", 1)[0]) == {"status": "ok"}
    wait_until(lambda: curl(f"{base}/ready").stdout.endswith("200"), 60, "server /ready (model loaded)", service)
    body, status = curl(f"{base}/v1/models").stdout.rsplit("\n", 1)
    assert status == "200"
    assert json.loads(body)["object"] == "list"
    metrics = curl(f"{base}/metrics").stdout
    assert 'cotdistill_http_requests_total{route="/health",status="200"}' in metrics
    assert service.terminate() == 0, service.log()


def test_unknown_service_name_is_refused() -> None:
    result = subprocess.run([tool("cotdistill"), "serve", "nope"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "unknown service 'nope'" in result.stderr and "teacher" in result.stderr


def test_placeholder_setting_stops_start_up_with_the_variable_named(
    run_service: Callable[..., ServiceProcess],
) -> None:
    service = run_service("teacher", {"COTDISTILL_TEACHER_MODEL": "changeme"})
    assert service.proc.wait(timeout=60) == 2
    assert service.log().strip() == "teacher: COTDISTILL_TEACHER_MODEL='changeme' is a placeholder; set a real value"


@pytest.mark.parametrize(
    ("service", "env", "line"),
    [
        (
            "evaluator",
            {"COTDISTILL_EVALUATOR_MAX_EXAMPLES": "many"},
            "evaluator: COTDISTILL_EVALUATOR_MAX_EXAMPLES='many': Input should be a valid integer, "
            "unable to parse string as an integer",
        ),
        (
            "trainer",
            {"COTDISTILL_TRAINER_CANCEL_GRACE": "5"},
            "trainer: COTDISTILL_TRAINER_CANCEL_GRACE: unknown setting; "
            "did you mean COTDISTILL_TRAINER_CANCEL_GRACE_S?",
        ),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable_and_exit_2(
    run_service: Callable[..., ServiceProcess], service: str, env: dict[str, str], line: str
) -> None:
    started = run_service(service, env)
    assert started.proc.wait(timeout=60) == 2
    assert started.log().strip() == line  # one line, no traceback

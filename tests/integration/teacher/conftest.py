"""Teacher processes and clients shared by the teacher integration tests."""

from __future__ import annotations

import re
import urllib.request

import grpc

from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc

TEACHER_ENV = {
    "COTDISTILL_TEACHER_BACKEND": "transformers",
    "COTDISTILL_TEACHER_NUM_THREADS": "1",
    "COTDISTILL_TEACHER_GRACE_PERIOD_S": "20",
}


def stub(address: str) -> teacher_pb2_grpc.TeacherServiceStub:
    return teacher_pb2_grpc.TeacherServiceStub(grpc.insecure_channel(address))


def health_status(address: str, service: str = "") -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def scrape(metrics_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(?:\{\})?") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.M)
    return float(found.group(1)) if found else 0.0


def prompt(text: str, pid: str = "") -> teacher_pb2.Prompt:
    return teacher_pb2.Prompt(id=pid, text=text)

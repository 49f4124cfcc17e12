"""Container health check: exit 0 when the service in this container reports ready, else 1.

Used by each image's ``HEALTHCHECK`` (Docker, compose); Kubernetes uses its native gRPC / HTTP
probes instead. The port follows the service's own settings variable, so an overridden
``COTDISTILL_<SERVICE>_PORT`` keeps the check right.

    python healthcheck.py teacher|trainer|evaluator   # grpc.health.v1 Check on 127.0.0.1:<port>
    python healthcheck.py server                      # GET http://127.0.0.1:<port>/ready
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_PORTS = {"teacher": 50051, "trainer": 50052, "evaluator": 50053, "server": 8000}
TIMEOUT_S = 3.0


def port_of(service: str) -> int:
    """The port the service listens on, from ``COTDISTILL_<SERVICE>_PORT`` or its default."""
    return int(os.environ.get(f"COTDISTILL_{service.upper()}_PORT", DEFAULT_PORTS[service]))


def check_grpc(port: int) -> bool:
    """The standard gRPC health check (empty service name = the whole server)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def check_http(port: int) -> bool:
    """The model server's readiness route answers 200."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=TIMEOUT_S) as response:
        return bool(response.status == 200)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in DEFAULT_PORTS:
        print(f"usage: healthcheck.py {{{'|'.join(DEFAULT_PORTS)}}}", file=sys.stderr)
        return 2
    service = argv[0]
    try:
        healthy = check_http(port_of(service)) if service == "server" else check_grpc(port_of(service))
    except Exception as err:  # any failure to answer is "unhealthy", with the reason for `docker inspect`
        print(f"{service}: unhealthy: {err}", file=sys.stderr)
        return 1
    print(f"{service}: {'healthy' if healthy else 'not ready'}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

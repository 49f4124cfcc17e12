"""`helm test` checks: each service answers its health check and one real call.

Runs inside the service's own image (grpcio and the cotdistill.v1 stubs are there), from the
release's test pods, as a cotdistill client:

    python chart_test.py teacher   --address HOST:PORT
    python chart_test.py trainer   --address HOST:PORT
    python chart_test.py evaluator --address HOST:PORT [--server-url URL --model NAME | --teacher HOST:PORT]
    python chart_test.py server    --url URL --model NAME      (API key from $COTDISTILL_API_KEY)

Exit 0 and one line per check on success; exit 1 with the reason on the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

TIMEOUT_S = 30.0
SERVICES = {
    "teacher": "cotdistill.v1.TeacherService",
    "trainer": "cotdistill.v1.TrainerService",
    "evaluator": "cotdistill.v1.EvaluatorService",
}


class CheckFailed(Exception):
    pass


def grpc_health(address: str, service: str) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", service):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT_S)
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                raise CheckFailed(f"health of {name or 'the server'} at {address} is {status}")
    return f"grpc.health.v1 SERVING ({service})"


def teacher_call(args: argparse.Namespace) -> str:
    import grpc

    from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc

    with grpc.insecure_channel(args.address) as channel:
        info = teacher_pb2_grpc.TeacherServiceStub(channel).Info(teacher_pb2.InfoRequest(), timeout=TIMEOUT_S)
    if not info.model_id or info.tokenizer.vocab_size <= 0:
        raise CheckFailed(f"Info names no model or tokenizer: {info}")
    return f"Info: model {info.model_id} ({info.backend}), vocab {info.tokenizer.vocab_size}, top-k <= {info.max_top_k}"


def trainer_call(args: argparse.Namespace) -> str:
    import grpc

    from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc

    with grpc.insecure_channel(args.address) as channel:
        reply = trainer_pb2_grpc.TrainerServiceStub(channel).ListRuns(
            trainer_pb2.ListRunsRequest(page_size=10), timeout=TIMEOUT_S
        )
    return f"ListRuns: {len(reply.runs)} run(s) on record"


def evaluator_call(args: argparse.Namespace) -> str:
    """Evaluate two synthetic questions on the release's server (or teacher): a full round trip."""
    import grpc

    from cotdistill.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc

    if args.server_url:
        model = common_pb2.ModelRef(
            openai=common_pb2.OpenAIEndpoint(
                base_url=args.server_url.rstrip("/") + "/v1", model=args.model, api_key_env=args.api_key_env
            )
        )
    elif args.teacher:
        model = common_pb2.ModelRef(teacher_address=args.teacher)
    else:
        return "Evaluate: skipped (no server or teacher in this release to evaluate)"
    request = evaluator_pb2.EvaluateRequest(
        model=model,
        datasets=[evaluator_pb2.EvalDataset(name="synthetic_arithmetic", split="test", limit=2)],
        formats=[args.format],
        generation=evaluator_pb2.EvalGeneration(max_tokens=16),
        output_dir=args.output_dir,
        no_cache=True,
        label="helm test",
    )
    with grpc.insecure_channel(args.address) as channel:
        stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
        results = [r.result for r in stub.Evaluate(request, timeout=300) if r.HasField("result")]
    if len(results) != 1 or not results[0].results or results[0].results[0].total != 2:
        raise CheckFailed(f"Evaluate returned no result for 2 questions: {results}")
    row = results[0].results[0]
    return f"Evaluate: {row.dataset}/{row.format} {row.correct}/{row.total} correct"


def http(method: str, url: str, body: dict[str, object] | None = None) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get("COTDISTILL_API_KEY", "")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return dict(json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as err:
        raise CheckFailed(f"{method} {url}: HTTP {err.code}: {err.read()[:300]!r}") from None


def server_checks(args: argparse.Namespace) -> list[str]:
    base = args.url.rstrip("/")
    http("GET", f"{base}/ready")
    models = http("GET", f"{base}/v1/models")
    names = [m.get("id") for m in models.get("data", [])]  # type: ignore[union-attr]
    if args.model not in names:
        raise CheckFailed(f"/v1/models lists {names}, not {args.model!r}")
    reply = http("POST", f"{base}/v1/completions", {"model": args.model, "prompt": "Q: 1 + 1?\nA:", "max_tokens": 4})
    choices = reply.get("choices") or []
    if not choices:
        raise CheckFailed(f"/v1/completions returned no choice: {reply}")
    return ["/ready 200", f"/v1/models lists {args.model}", f"/v1/completions: {choices[0].get('text', '')!r}"]  # type: ignore[union-attr]


def retry(check: Callable[[], object], attempts: int) -> object:
    """The release may still be rolling out when the test starts: retry a few times."""
    for attempt in range(1, attempts + 1):
        try:
            return check()
        except Exception:
            if attempt == attempts:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("component", choices=[*SERVICES, "server"])
    parser.add_argument("--address", help="host:port of a gRPC service")
    parser.add_argument("--url", help="base URL of the model server")
    parser.add_argument("--model", default="", help="served model name")
    parser.add_argument("--server-url", default="", help="evaluator: evaluate this OpenAI-compatible server")
    parser.add_argument("--teacher", default="", help="evaluator: evaluate this teacher (host:port)")
    parser.add_argument("--api-key-env", default="", help="evaluator: its env var with the server's API key")
    parser.add_argument("--format", default="ft_cot", help="evaluator: prompt format")
    parser.add_argument("--output-dir", default="/tmp/helm-test", help="evaluator: where it writes predictions")
    parser.add_argument("--attempts", type=int, default=6)
    args = parser.parse_args(argv)
    try:
        if args.component == "server":
            if not args.url:
                parser.error("server needs --url")
            lines = list(retry(lambda: server_checks(args), args.attempts))  # type: ignore[call-overload]
        else:
            if not args.address:
                parser.error(f"{args.component} needs --address")
            calls = {"teacher": teacher_call, "trainer": trainer_call, "evaluator": evaluator_call}
            lines = [
                str(retry(lambda: grpc_health(args.address, SERVICES[args.component]), args.attempts)),
                str(calls[args.component](args)),
            ]
    except Exception as err:  # one line for `kubectl logs`, never a traceback
        print(f"{args.component}: FAILED: {err}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"{args.component}: ok: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

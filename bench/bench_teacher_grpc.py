"""Teacher gRPC service tokens/s vs the same engine called in-process (top-20 logprobs).

Workload: 8 prompts x n=16 samples x 64 tokens (temperature 1, seeded, so both sides generate the
same tokens), top-20 candidates per token. Ours: `cotdistill serve teacher` (transformers backend,
one torch thread) as a separate process, streamed to a gRPC client here that unpacks every
message into numpy arrays. Baseline: the same engine class and settings in this process, results
consumed as Python lists. Runs alternate (A, B, A, B, ...) and medians are compared, so load from
other processes on the machine hits both sides alike. Goal: >= 0.95x.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import write_result

PROMPTS = [
    "Tom has 3 apples. Tom buys 2 more. How many apples does Tom have?",
    "A coin is heads up. Sam flips the coin. Is the coin still heads up?",
    'Take the last letters of the words in "Ana Lee" and concatenate them.',
    "Mia has 12 pens. Mia gives away 5. How many pens does Mia have?",
    "Ben has 7 cards. Ben buys 9 more. How many cards does Ben have?",
    "Eva has 20 coins. Eva loses 4. How many coins does Eva have?",
    'Take the last letters of the words in "Ivy Sam" and concatenate them.',
    "A coin is heads up. Lee does not flip the coin. Is the coin still heads up?",
]
N, MAX_TOKENS, TOP_K, SEED = 16, 64, 20, 1234
ROUNDS = 5


def build_teacher(root: Path) -> Path:
    """The benchmark teacher: a 4-layer Llama (hidden 128, head_dim 32), byte-level BPE."""
    from cotdistill.pipeline.tiny_models import build_causal_lm, reasoning_corpus, train_tokenizer

    out = root / "teacher"
    if not (out / "config.json").exists():
        tokenizer = train_tokenizer(reasoning_corpus(), "byte_bpe", 360)
        build_causal_lm(out, tokenizer, hidden_size=128, num_layers=4, num_heads=4, seed=1)
    return out


def scratch() -> Path:
    root = Path(os.environ.get("COTDISTILL_BENCH_DIR", Path(tempfile.gettempdir()) / "cotdistill-bench-teacher"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def teacher_process(model: Path, *, cpu: int | None = None, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """`cotdistill serve teacher` on a free port (optionally pinned to one core); yields host:port."""
    port = free_port()
    env = {
        **os.environ,
        "COTDISTILL_TEACHER_MODEL": str(model),
        "COTDISTILL_TEACHER_BACKEND": "transformers",
        "COTDISTILL_TEACHER_NUM_THREADS": "1",
        "COTDISTILL_TEACHER_PORT": str(port),
        "COTDISTILL_TEACHER_METRICS_PORT": "0",
        "COTDISTILL_TEACHER_LOG_LEVEL": "WARNING",
        "COTDISTILL_TEACHER_MAX_BATCH_SEQUENCES": "256",
        **(extra_env or {}),
    }
    command = [str(Path(sys.executable).parent / "cotdistill"), "serve", "teacher"]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, proc)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_serving(address: str, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"teacher exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"teacher at {address} not SERVING after {timeout_s} s")


def sample_request(prompts: list[str], n: int = N) -> Any:
    from cotdistill.v1 import teacher_pb2

    params = teacher_pb2.SamplingParams(n=n, temperature=1.0, max_tokens=MAX_TOKENS, top_k_logprobs=TOP_K, seed=SEED)
    return teacher_pb2.SampleRequest(prompts=[teacher_pb2.Prompt(text=p) for p in prompts], params=params)


async def grpc_tokens(address: str, requests: list[Any]) -> int:
    """Stream every request concurrently; unpack each message's columns into numpy arrays."""
    import grpc
    import numpy as np

    from cotdistill.v1 import teacher_pb2_grpc

    async with grpc.aio.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        stub = teacher_pb2_grpc.TeacherServiceStub(ch)

        async def one(request: Any) -> int:
            tokens = 0
            async for r in stub.Sample(request):
                lp = r.logprobs
                ids = np.asarray(lp.token_ids, dtype=np.int32)
                np.asarray(lp.top_ids, dtype=np.int32).reshape(len(ids), lp.k)
                np.asarray(lp.top_logprobs, dtype=np.float32).reshape(len(ids), lp.k)
                tokens += len(ids)
            return tokens

        return sum(await asyncio.gather(*(one(r) for r in requests)))


def in_process_engine(model: Path) -> Any:
    from cotdistill.teacher.engines.transformers_engine import TransformersEngine

    return TransformersEngine(str(model), num_threads=1, max_batch_sequences=256)


async def engine_tokens(engine: Any, prompts: list[str], n: int = N) -> int:
    from cotdistill.teacher.engine import GenerateRequest, SamplingOptions

    options = SamplingOptions(n=n, temperature=1.0, max_tokens=MAX_TOKENS, top_k_logprobs=TOP_K, seed=SEED)
    tokens = 0
    async for c in engine.generate(GenerateRequest("bench", prompts, engine.encode(prompts), options)):
        tokens += len(c.scores.token_ids)
    return tokens


def main() -> None:
    model = build_teacher(scratch())
    engine = in_process_engine(model)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(engine.start())
    grpc_rates: list[float] = []
    local_rates: list[float] = []
    tokens_seen: set[int] = set()
    with teacher_process(model) as address:
        loop.run_until_complete(grpc_tokens(address, [sample_request(PROMPTS[:2], 2)]))  # warm-up
        loop.run_until_complete(engine_tokens(engine, PROMPTS[:2], 2))
        for _ in range(ROUNDS):
            start = time.perf_counter()
            tokens = loop.run_until_complete(grpc_tokens(address, [sample_request(PROMPTS)]))
            grpc_rates.append(tokens / (time.perf_counter() - start))
            tokens_seen.add(tokens)
            start = time.perf_counter()
            tokens = loop.run_until_complete(engine_tokens(engine, PROMPTS))
            local_rates.append(tokens / (time.perf_counter() - start))
            tokens_seen.add(tokens)
    loop.run_until_complete(engine.close())
    write_result(
        "teacher_grpc",
        title="Teacher gRPC service vs the same engine in-process (top-20)",
        metric="generated tokens/s",
        value=statistics.median(grpc_rates),
        baseline_name="transformers engine in-process",
        baseline_value=statistics.median(local_rates),
        goal=">= 0.95x",
        figures={
            "workload": f"{len(PROMPTS)} prompts x n={N} x {MAX_TOKENS} tokens, top-{TOP_K}, seeded",
            "model": "Llama 4 layers, hidden 128, vocab 360 (random weights)",
            "grpc_tokens_per_s": grpc_rates,
            "in_process_tokens_per_s": local_rates,
            "tokens_per_round": sorted(tokens_seen),
            "load_average_1m": os.getloadavg()[0],
        },
    )


if __name__ == "__main__":
    main()

"""Teacher scale-out: the sampling job over 1, 2, 4 and 8 teacher replicas, against linear.

On 2 CPU cores real replicas cannot show whether the job and the replica spreading scale (the
replicas would share the cores), so each replica here is a real ``cotdistill serve teacher``
with the OpenAI-compatible backend, pointed at its own loopback stub server that answers
``/v1/completions`` like a vLLM server with a fixed capacity: at most ``CAPACITY`` sequences at
once, each taking ``TOKEN_LATENCY_S`` per generated token (an asyncio sleep, so the stubs cost
almost no CPU; bodies are prebuilt). The job (``cotdistill.pipeline.sampling``: units, replica
pool, retries, Parquet shards, manifest) samples ``UNITS_PER_REPLICA`` units per replica, so
every configuration has the same work per replica; throughput is samples per second of the
job's wall time. Linear is R x the one-replica throughput measured in the same run. Goal: >= 0.9x
linear at 8 replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.real_models import LoadSampler

REPLICAS = (1, 2, 4, 8)
CAPACITY = 16  # sequences a stub decodes at once (its "batch")
TOKEN_LATENCY_S = 0.04  # per generated token of one sequence
MAX_TOKENS = 24
TOP_K = 5
D = 4  # samples per question
UNIT_SIZE = 4  # questions per unit: 16 sequences, one stub's capacity
UNITS_PER_REPLICA = 6
MODEL = "stub"


# ---- the stub server ----------------------------------------------------------------------------


def _body(n: int, tokens: int, k: int) -> bytes:
    """A /v1/completions reply with ``n`` choices of ``tokens`` tokens and top-``k`` logprobs."""
    choices = []
    for i in range(n):
        ids = [100 + (7 * t + i) % 50 for t in range(tokens)]
        top = [{f"token_id:{tid + j}": -0.1 - j for j in range(k)} for tid in ids]
        choices.append(
            {
                "index": i,
                "text": " The last letters are ab. The answer is ab.",
                "finish_reason": "length",
                "logprobs": {
                    "tokens": [f"token_id:{tid}" for tid in ids],
                    "token_logprobs": [-0.1] * tokens,
                    "top_logprobs": top,
                },
            }
        )
    return json.dumps(
        {"id": "cmpl", "object": "text_completion", "choices": choices, "usage": {"prompt_tokens": 8}}
    ).encode()


class Stub:
    """One replica's fake OpenAI-compatible server: fixed capacity, fixed per-token latency."""

    def __init__(self) -> None:
        self.free = CAPACITY
        self.changed = asyncio.Condition()
        self.bodies: dict[tuple[int, int, int], bytes] = {}
        self.models = json.dumps({"data": [{"id": MODEL, "max_model_len": 4096}]}).encode()

    async def _decode(self, sequences: int, tokens: int) -> None:
        """Hold ``sequences`` of the capacity (all at once: no partial holds that deadlock) for the decode time."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.free >= sequences)
            self.free -= sequences
        try:
            await asyncio.sleep(tokens * TOKEN_LATENCY_S)
        finally:
            async with self.changed:
                self.free += sequences
                self.changed.notify_all()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = next((int(h.split(":", 1)[1]) for h in lines[1:] if h.lower().startswith("content-length")), 0)
                payload = json.loads(await reader.readexactly(length)) if length else {}
                if method == "GET" and path.endswith("/models"):
                    body = self.models
                else:
                    n, tokens = int(payload.get("n", 1)), int(payload.get("max_tokens", 16))
                    k = int(payload.get("logprobs") or 0)
                    await self._decode(min(n, CAPACITY), tokens)
                    body = self.bodies.get((n, tokens, k)) or self.bodies.setdefault(
                        (n, tokens, k), _body(n, tokens, k)
                    )
                head_out = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                writer.write(head_out.encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def serve_stubs(ports: list[int]) -> None:
    servers = [await asyncio.start_server(Stub().handle, "127.0.0.1", port) for port in ports]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


# ---- the driver -----------------------------------------------------------------------------------


def _free_port() -> int:
    from cotdistill.pipeline.local_services import free_port

    return free_port()


async def _job(addresses: list[str], units: int, out: Path) -> tuple[float, int]:
    from cotdistill.common.artifacts import ArtifactStore
    from cotdistill.pipeline.run_config import RunConfig
    from cotdistill.pipeline.sampling.stage import run_sampling

    config = RunConfig.model_validate(
        {
            "name": "scaling",
            "output_dir": str(out),
            "teacher": {"addresses": addresses, "connect_timeout_s": 120},
            "sampling": {
                "dataset": "synthetic_last_letters",
                "split": "train",
                "limit": units * UNIT_SIZE,
                "prompt_format": "zero_shot_cot",
                "num_samples": D,
                "temperature": 0.7,
                "max_tokens": MAX_TOKENS,
                "top_k_logprobs": TOP_K,
                "seed": 0,
                "unit_size": UNIT_SIZE,
                # Enough units in flight to keep every replica at its capacity, plus one queued each.
                "concurrency": 2 * len(addresses),
            },
        }
    )
    store = ArtifactStore(out / "scaling")
    started = time.monotonic()
    result = await run_sampling(config, store)
    return time.monotonic() - started, result.samples


def main() -> None:
    from cotdistill.pipeline import local_services

    ports = [_free_port() for _ in range(max(REPLICAS))]
    stub = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_teacher_scaling", "--stubs", ",".join(map(str, ports))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert stub.stdout is not None and stub.stdout.readline().strip() == "ready"
    teachers: list[Any] = []
    rows: dict[int, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp, LoadSampler(every_s=2) as load:
            root = Path(tmp)
            for i, port in enumerate(ports):
                env = {
                    "COTDISTILL_TEACHER_BACKEND": "openai",
                    "COTDISTILL_TEACHER_MODEL": MODEL,
                    "COTDISTILL_TEACHER_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
                    "COTDISTILL_TEACHER_OPENAI_TOKEN_IDS": "true",
                    "COTDISTILL_TEACHER_OPENAI_CONCURRENCY": str(4 * CAPACITY),
                    "COTDISTILL_TEACHER_ARTIFACTS_DIR": str(root / f"teacher{i}"),
                }
                teachers.append(local_services.start("teacher", root / f"logs{i}", env))
            for t in teachers:
                asyncio.run(local_services.wait_ready(t, timeout_s=300))
            for r in REPLICAS:
                addresses = [t.address for t in teachers[:r]]
                seconds, samples = asyncio.run(_job(addresses, UNITS_PER_REPLICA * r, root / f"run{r}"))
                rows[r] = {"seconds": round(seconds, 2), "samples": samples, "samples_per_second": samples / seconds}
                print(r, rows[r], flush=True)
    finally:
        for t in teachers:
            local_services.stop(t)
        stub.terminate()
        stub.wait()
    single = rows[1]["samples_per_second"]
    efficiency = {r: rows[r]["samples_per_second"] / (r * single) for r in REPLICAS}
    capacity = CAPACITY / (MAX_TOKENS * TOKEN_LATENCY_S)  # samples/s one stub can give at most
    write_result(
        "teacher_scaling",
        title="Sampling job over 8 vs 1 teacher replicas (OpenAI backend -> loopback stubs, fixed latency)",
        metric="samples/s",
        value=rows[max(REPLICAS)]["samples_per_second"],
        baseline_name=f"{max(REPLICAS)} x the 1-replica throughput (linear)",
        baseline_value=max(REPLICAS) * single,
        goal=">= 0.9x linear at 8 replicas",
        figures={
            "by_replicas": rows,
            "efficiency_vs_linear": efficiency,
            "stub_capacity_samples_per_second": capacity,
            "stub": {"capacity_sequences": CAPACITY, "token_latency_s": TOKEN_LATENCY_S, "max_tokens": MAX_TOKENS},
            "top_k": TOP_K,
            "samples_per_question": D,
            "unit_size": UNIT_SIZE,
            "units_per_replica": UNITS_PER_REPLICA,
            "load_average_1m": load.summary(),
            "cores": os.cpu_count(),
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--stubs", help="comma-separated ports: run the stub servers (internal)")
    ns = parser.parse_args()
    if ns.stubs:
        asyncio.run(serve_stubs([int(p) for p in ns.stubs.split(",")]))
    else:
        main()

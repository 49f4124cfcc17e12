"""Teacher horizontal scaling: 2 replicas vs 1, each replica pinned to one core (taskset).

Work: 16 units of (2 prompts x n=8 x 64 tokens, top-20), sent by one client with every unit in
flight at once. Baseline: all units to one replica on core 0. Ours: units split round-robin over
two replicas on cores 0 and 1. The client runs unpinned. Goal: >= 1.8x. On a machine shared with
other jobs the second core is not free; ``load_average_1m`` in the figures says how busy it was.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from bench.bench_teacher_grpc import PROMPTS, build_teacher, grpc_tokens, sample_request, scratch, teacher_process
from bench.common import write_result

UNITS, PROMPTS_PER_UNIT, N = 16, 2, 8
ROUNDS = 3


def units() -> list[object]:
    return [
        sample_request([PROMPTS[(2 * u + j) % len(PROMPTS)] for j in range(PROMPTS_PER_UNIT)], N) for u in range(UNITS)
    ]


async def run(addresses: list[str]) -> int:
    work = units()
    shares = [work[i :: len(addresses)] for i in range(len(addresses))]
    return sum(await asyncio.gather(*(grpc_tokens(a, s) for a, s in zip(addresses, shares, strict=True))))


def main() -> None:
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores")
    model = build_teacher(scratch())
    loop = asyncio.new_event_loop()
    one, two = [], []
    with teacher_process(model, cpu=0) as first, teacher_process(model, cpu=1) as second:
        loop.run_until_complete(run([first, second]))  # warm-up both
        for _ in range(ROUNDS):
            start = time.perf_counter()
            tokens = loop.run_until_complete(run([first]))
            one.append(tokens / (time.perf_counter() - start))
            start = time.perf_counter()
            tokens = loop.run_until_complete(run([first, second]))
            two.append(tokens / (time.perf_counter() - start))
    write_result(
        "teacher_replicas",
        title="Teacher replicas: 2 vs 1 (one core each)",
        metric="generated tokens/s",
        value=statistics.median(two),
        baseline_name="1 replica",
        baseline_value=statistics.median(one),
        goal=">= 1.8x",
        figures={
            "workload": f"{UNITS} units x {PROMPTS_PER_UNIT} prompts x n={N} x 64 tokens, top-20",
            "one_replica_tokens_per_s": one,
            "two_replicas_tokens_per_s": two,
            "pinning": "taskset -c 0 / -c 1, COTDISTILL_TEACHER_NUM_THREADS=1",
            "load_average_1m": os.getloadavg()[0],
        },
    )


if __name__ == "__main__":
    main()

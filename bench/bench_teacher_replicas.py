"""Teacher horizontal scaling: 2 replicas vs 1, each replica pinned to one core (taskset).

Work: 12 units of (2 prompts x n=8 x 64 tokens, top-20), sent by one client with every unit in
flight at once. Baseline: all units to one replica on core 0. Ours: units split round-robin over
two replicas on cores 0 and 1. The client runs unpinned. Goal: >= 1.8x.

Each replica decodes at most 32 samples per batch (``MAX_BATCH_SEQUENCES``), so both
configurations run full batches: a replica is saturated, as a production teacher at its batch
limit is. Without that cap a single replica would simply run one batch twice as wide, which on a
toy model costs about the same per step as half the width, and the comparison would measure
batch-width economics instead of scale-out. On a machine shared with other jobs the second core
is not free; ``load_average_1m`` in the figures says how busy it was.

The figures also hold the machine's own ceiling: the same comparison for a pure compute loop
(a torch matmul in one thread, pinned per core, 1 process vs 2). Where two pinned processes do not
get twice the compute (vCPUs that share a physical core, a host CPU quota), no replica setup can,
and ``efficiency_vs_ceiling`` says how close the teacher comes to what the cores allow.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

from bench.bench_teacher_grpc import PROMPTS, build_teacher, grpc_tokens, sample_request, scratch, teacher_process
from bench.common import write_result

UNITS, PROMPTS_PER_UNIT, N = 12, 2, 8
ROUNDS = 4
BATCH = 32


def units() -> list[object]:
    return [
        sample_request([PROMPTS[(2 * u + j) % len(PROMPTS)] for j in range(PROMPTS_PER_UNIT)], N) for u in range(UNITS)
    ]


async def run(addresses: list[str]) -> int:
    work = units()
    shares = [work[i :: len(addresses)] for i in range(len(addresses))]
    return sum(await asyncio.gather(*(grpc_tokens(a, s) for a, s in zip(addresses, shares, strict=True))))


_SPIN = """
import time, torch
torch.set_num_threads(1)
a, w = torch.randn(64, 128), torch.randn(128, 128)
start, n = time.perf_counter(), 0
while time.perf_counter() - start < 3:
    for _ in range(100):
        a @ w
    n += 100
print(n / (time.perf_counter() - start))
"""


def compute_ceiling() -> float:
    """Matmuls/s of two processes pinned to cores 0 and 1 over one process on core 0."""

    def spin(cpus: list[int]) -> float:
        procs = [
            subprocess.Popen(["taskset", "-c", str(c), sys.executable, "-c", _SPIN], stdout=subprocess.PIPE, text=True)
            for c in cpus
        ]
        return sum(float(p.communicate()[0]) for p in procs)

    return statistics.median([spin([0, 1]) / spin([0]) for _ in range(2)])


def main() -> None:
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores")
    model = build_teacher(scratch())
    ceiling = compute_ceiling()
    loop = asyncio.new_event_loop()
    one, two = [], []
    env = {"COTDISTILL_TEACHER_MAX_BATCH_SEQUENCES": str(BATCH)}
    with teacher_process(model, cpu=0, extra_env=env) as first, teacher_process(model, cpu=1, extra_env=env) as second:
        loop.run_until_complete(run([first, second]))  # warm-up both
        for r in range(ROUNDS):
            # Alternate which configuration goes first so drifting load from other processes
            # hits both alike; each pair's ratio is kept too.
            order = [([first], one), ([first, second], two)]
            for addresses, rates in order if r % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                tokens = loop.run_until_complete(run(addresses))
                rates.append(tokens / (time.perf_counter() - start))
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
            "paired_ratios": [b / a for a, b in zip(one, two, strict=True)],
            "two_replicas_tokens_per_s": two,
            "pinning": "taskset -c 0 / -c 1, COTDISTILL_TEACHER_NUM_THREADS=1",
            "max_batch_sequences": BATCH,
            "compute_scaling_ceiling": ceiling,
            "efficiency_vs_ceiling": statistics.median(two) / statistics.median(one) / ceiling,
            "load_average_1m": os.getloadavg()[0],
        },
    )


if __name__ == "__main__":
    main()

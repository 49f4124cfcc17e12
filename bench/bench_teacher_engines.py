"""Teacher engines on the benchmark teacher (4-layer Llama, CPU), two results:

* ``teacher_batching``: the transformers engine decoding all samples in one batch (left padding,
  KV cache, top-20 from the same log-softmax) vs a loop that sends one prompt at a time (n=1,
  batch of one), the way a naive sampler calls ``generate``. Same prompts, same tokens/sample cap.
* ``teacher_vllm_vs_transformers``: vLLM CPU (``AsyncLLM``, eager mode) vs the transformers engine,
  same workload, top-20. On a toy model per-step overhead dominates and transformers is expected
  to win on CPU; on a GPU with a real model vLLM is the fast path (see docs/teacher.md).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from bench.bench_teacher_grpc import PROMPTS, build_teacher, engine_tokens, in_process_engine, scratch
from bench.common import write_result

LOOP_PROMPTS = 32  # prompts for the batching comparison (each run alone in the baseline)
ROUNDS = 3


async def loop_tokens(engine: Any, prompts: list[str]) -> int:
    return sum([await engine_tokens(engine, [p], n=1) for p in prompts])


def rate(loop: asyncio.AbstractEventLoop, run: Any) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = loop.run_until_complete(run)
    return tokens / (time.perf_counter() - start), tokens


def bench_batching(loop: asyncio.AbstractEventLoop, engine: Any) -> None:
    prompts = [PROMPTS[i % len(PROMPTS)] + f" ({i})" for i in range(LOOP_PROMPTS)]
    batched, looped = [], []
    for _ in range(ROUNDS):
        batched.append(rate(loop, engine_tokens(engine, prompts, n=1))[0])
        looped.append(rate(loop, loop_tokens(engine, prompts))[0])
    write_result(
        "teacher_batching",
        title="Teacher transformers engine: batched vs per-prompt loop",
        metric="generated tokens/s",
        value=statistics.median(batched),
        baseline_name="one prompt at a time",
        baseline_value=statistics.median(looped),
        goal="> 1x (batching pays)",
        figures={
            "workload": f"{LOOP_PROMPTS} prompts x 64 tokens, top-20, seeded",
            "batched_tokens_per_s": batched,
            "loop_tokens_per_s": looped,
            "load_average_1m": os.getloadavg()[0],
        },
    )


def bench_vllm(loop: asyncio.AbstractEventLoop, engine: Any, model: str) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
    from cotdistill.teacher.engines.vllm_engine import VllmEngine

    vllm = VllmEngine(
        model,
        engine_kwargs={
            "enforce_eager": True,
            "dtype": "float32",
            "max_model_len": 512,
            "distributed_executor_backend": "uni",
        },
    )
    loop.run_until_complete(vllm.start())
    try:
        loop.run_until_complete(engine_tokens(vllm, PROMPTS[:2], n=2))  # warm-up
        ours, theirs = [], []
        for _ in range(ROUNDS):
            ours.append(rate(loop, engine_tokens(vllm, PROMPTS))[0])
            theirs.append(rate(loop, engine_tokens(engine, PROMPTS))[0])
    finally:
        loop.run_until_complete(vllm.close())
    write_result(
        "teacher_vllm_vs_transformers",
        title="Teacher engines on CPU: vLLM vs transformers (tiny model)",
        metric="generated tokens/s",
        value=statistics.median(ours),
        baseline_name="transformers engine",
        baseline_value=statistics.median(theirs),
        goal="informational (vLLM is the GPU path)",
        figures={
            "workload": f"{len(PROMPTS)} prompts x n=16 x 64 tokens, top-20, seeded",
            "vllm_tokens_per_s": ours,
            "transformers_tokens_per_s": theirs,
            "vllm": "AsyncLLM, enforce_eager, float32, one request per sample, DELTA outputs",
            "load_average_1m": os.getloadavg()[0],
        },
    )


def main() -> None:
    model = build_teacher(scratch())
    engine = in_process_engine(model)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(engine.start())
    try:
        loop.run_until_complete(engine_tokens(engine, PROMPTS[:2], n=2))  # warm-up
        bench_batching(loop, engine)
        bench_vllm(loop, engine, str(model))
    finally:
        loop.run_until_complete(engine.close())


if __name__ == "__main__":
    main()

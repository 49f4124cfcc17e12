"""Teacher engines on a real model: vLLM CPU vs transformers, Qwen2.5-Coder-0.5B-Instruct, top-20.

Workload (:mod:`bench.real_teacher`, the REAL-MODELS note's measurement): 40 MultiArith train
questions through the chat template x D=2 samples x at most 160 new tokens, temperature 0.7,
seeded, top-20 raw logprobs; one request of 80 samples, the way a sampling-job unit arrives.
Both engines are the teacher service's own classes, started in this process, and rounds
alternate (vLLM, transformers, vLLM, transformers) so load from other jobs hits both alike.

* ours: ``VllmEngine`` (``AsyncLLM``, bf16, the service's default compiled mode; vLLM's CPU
  backend binds its one OpenMP thread to core 0 and leaves core 1 to the frontend).
* baseline: ``TransformersEngine`` with the service defaults (``dtype=auto``, which is bf16 for
  this bf16 checkpoint on an AVX512-BF16 CPU; all 80 rows in one batch) and one torch thread,
  the same compute vLLM gives itself on 2 cores.

Tokens/s counts generated tokens over the wall time of the whole request. Startup (construction
to ready) is reported separately. ``python -m bench.profile_teacher_real`` shows where the
transformers engine's time goes.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from bench.common import write_result
from bench.real_teacher import MAX_TOKENS, MODEL, SAMPLES, TOP_K, sample, transformers_engine, vllm_engine, workload

ROUNDS = 2
THREADS = 1


async def timed_round(engine: Any, work: Any) -> dict[str, float]:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    completions = await sample(engine, work)
    elapsed = time.perf_counter() - start
    tokens = sum(len(c.scores.token_ids) for c in completions)
    if any(c.scores.k != TOP_K or len(c.scores.top_ids) != TOP_K * len(c.scores.token_ids) for c in completions):
        raise AssertionError("an engine returned fewer than top-20 candidates")
    return {"tokens_per_s": tokens / elapsed, "tokens": tokens, "seconds": elapsed, "load_average_1m": load}


async def started(engine: Any) -> float:
    start = time.perf_counter()
    await engine.start()
    return time.perf_counter() - start


async def run() -> dict[str, Any]:
    work = workload()
    warm = workload(2)
    vllm = vllm_engine(work.model_dir)
    hf = transformers_engine(work.model_dir, threads=THREADS)
    ready = {"vllm": await started(vllm), "transformers": await started(hf)}
    print(f"ready: vLLM {ready['vllm']:.0f} s, transformers {ready['transformers']:.0f} s", flush=True)
    rounds: dict[str, list[dict[str, float]]] = {"vllm": [], "transformers": []}
    try:
        for engine in (vllm, hf):  # warm-up: first-request costs stay out of the timing
            await sample(engine, warm, n=1, max_tokens=8)
        for i in range(ROUNDS):
            for name, engine in (("vllm", vllm), ("transformers", hf)):
                result = await timed_round(engine, work)
                rounds[name].append(result)
                print(f"round {i} {name}: {result['tokens_per_s']:.1f} tok/s ({result['tokens']} tokens)", flush=True)
    finally:
        await vllm.close()
        await hf.close()
    return {"ready_s": ready, "rounds": rounds, "dtype": {"vllm": vllm.info().extra, "transformers": hf.info().extra}}


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = asyncio.run(run())
    rounds = result["rounds"]
    ours = statistics.median(r["tokens_per_s"] for r in rounds["vllm"])
    theirs = statistics.median(r["tokens_per_s"] for r in rounds["transformers"])
    write_result(
        "teacher_real_engines",
        title=f"Teacher engines on a real model (CPU): vLLM vs transformers, {MODEL}, top-20",
        metric="generated tokens/s",
        value=ours,
        baseline_name=f"transformers engine (bf16, {THREADS} thread)",
        baseline_value=theirs,
        goal="informational: the faster CPU backend for real models",
        figures={
            "workload": f"40 MultiArith questions (chat template) x D={SAMPLES} x <= {MAX_TOKENS} tokens, "
            f"temperature 0.7, seeded, top-{TOP_K}, one request",
            **result,
            "load_average_1m_end": os.getloadavg()[0],
        },
    )


if __name__ == "__main__":
    main()

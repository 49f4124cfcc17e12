"""vLLM teacher throughput with top-20 logprobs vs without, on one GPU (or the CPU build).

A random-weight model of a real architecture (``bench.gpu.models``; the throughput does not
depend on the weights) is saved to a temporary directory and served by vLLM's offline ``LLM``
without a tokenizer (prompt token ids in, token ids out). Every prompt generates exactly
``--max-tokens`` tokens (``ignore_eos``); the runs alternate without and with ``logprobs=20``.

    python -m bench.gpu.vllm_topk --model qwen2.5-0.5b --prompts 256 --max-tokens 256    # on a GPU
    python -m bench.gpu.vllm_topk --model tiny --prompts 4 --max-tokens 8 --cpu         # the CPU check
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from typing import Any


def measure(model_name: str, prompts: int, prompt_len: int, max_tokens: int, rounds: int, cpu: bool) -> dict[str, Any]:
    if cpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams

    from bench.gpu.models import build_config, save_random_model

    vocab = build_config(model_name).vocab_size
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as tmp:
        save_random_model(model_name, tmp)
        llm = LLM(
            model=tmp,
            skip_tokenizer_init=True,
            dtype="bfloat16",
            enforce_eager=cpu,
            max_model_len=prompt_len + max_tokens + 8,
            seed=0,
            **({} if cpu else {"gpu_memory_utilization": 0.85}),
        )
        rng = random.Random(0)
        batch = [{"prompt_token_ids": [rng.randrange(vocab) for _ in range(prompt_len)]} for _ in range(prompts)]
        figures: dict[str, list[float]] = {"none": [], "top20": []}
        for _ in range(rounds):
            for name, logprobs in (("none", None), ("top20", 20)):
                params = SamplingParams(
                    n=1, temperature=0.8, max_tokens=max_tokens, ignore_eos=True, logprobs=logprobs, detokenize=False
                )
                started = time.perf_counter()
                outputs = llm.generate(batch, params, use_tqdm=False)
                seconds = time.perf_counter() - started
                tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
                if logprobs:
                    assert all(len(o.outputs[0].logprobs or []) == len(o.outputs[0].token_ids) for o in outputs)
                figures[name].append(tokens / seconds)
    best = {name: max(values) for name, values in figures.items()}
    return {
        "model": model_name,
        "prompts": prompts,
        "prompt_len": prompt_len,
        "max_tokens": max_tokens,
        "tokens_per_second": {k: round(v, 1) for k, v in best.items()},
        "rounds": figures,
        "top20_over_none": round(best["top20"] / best["none"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpu", action="store_true", help="the CPU build (a check of the script, not a figure)")
    parser.add_argument("--write", action="store_true", help="write bench/results/gpu_vllm_topk.json")
    args = parser.parse_args()
    result = measure(args.model, args.prompts, args.prompt_len, args.max_tokens, args.rounds, args.cpu)
    print(json.dumps(result), flush=True)
    if args.write:
        from bench.common import write_result

        write_result(
            "gpu_vllm_topk",
            title=f"vLLM teacher tokens/s with top-20 logprobs vs without ({args.model}, one GPU)",
            metric="generated tokens/s",
            value=result["tokens_per_second"]["top20"],
            baseline_name="same engine without logprobs",
            baseline_value=result["tokens_per_second"]["none"],
            goal="informational: the cost of keeping top-20",
            figures=result,
        )


if __name__ == "__main__":
    main()

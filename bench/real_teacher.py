"""The real teacher the ``*_real`` benchmarks share: Qwen2.5-Coder-0.5B-Instruct on MultiArith.

One workload for both ``teacher_real_engines`` and ``storage_real`` (the size of the
REAL-MODELS note's measurement): the first ``QUESTIONS`` MultiArith train questions rendered
through the model's chat template, D samples each at temperature 0.7 (the sampling job's
default), at most 160 new tokens, top-20 raw logprobs, seeded.

The model comes from the models cache (``cotdistill models pull qwen2.5-coder-0.5b-instruct``;
``COTDISTILL_MODELS_CACHE`` points at the cache); the engines are the teacher service's own
classes, started in this process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL = "qwen2.5-coder-0.5b-instruct"
QUESTIONS, SAMPLES, MAX_TOKENS, TOP_K, TEMPERATURE, SEED = 40, 2, 160, 20, 0.7, 1234
INSTRUCTION = "Solve the problem step by step in plain text, then end with 'The answer is N.'"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Workload:
    """Chat-rendered prompts (token ids) of the benchmark questions."""

    model_dir: Path
    ids: list[str]
    prompts: list[str]
    prompt_ids: list[list[int]]


def scratch(name: str) -> Path:
    """``.scratch/bench/<name>`` in the checkout (not committed; inputs cached between runs)."""
    root = Path(os.environ.get("COTDISTILL_BENCH_SCRATCH", REPO / ".scratch" / "bench")) / name
    root.mkdir(parents=True, exist_ok=True)
    return root


def model_dir() -> Path:
    """The teacher's directory in the models cache; a clear error when it was never pulled."""
    from cotdistill.common.models import resolve_model

    try:
        return Path(resolve_model(MODEL))
    except Exception as exc:
        raise SystemExit(f"{MODEL}: {exc} (run `cotdistill models pull {MODEL}` first)") from exc


def workload(questions: int = QUESTIONS) -> Workload:
    """The first ``questions`` MultiArith train questions as chat prompts of the teacher."""
    from transformers import AutoTokenizer

    from cotdistill.common.tasks import load_dataset

    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = load_dataset("multiarith", "train")[:questions]
    prompts = [
        str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": f"{e.question}\n{INSTRUCTION}"}],
                tokenize=False,
                add_generation_prompt=True,
            )
        )
        for e in examples
    ]
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return Workload(path, [e.id for e in examples], prompts, prompt_ids)


def vllm_env() -> None:
    """vLLM CPU settings (STACK.md): KV cache size, offline, caches and temp files in scratch."""
    base = scratch("vllm")
    for key, value in {
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",
        "VLLM_CACHE_ROOT": str(base / "cache"),
        "TORCHINDUCTOR_CACHE_DIR": str(base / "inductor"),
    }.items():
        os.environ.setdefault(key, value)


def vllm_engine(path: Path, *, eager: bool = False) -> Any:
    """The teacher's vLLM backend as the service builds it on CPU (bf16, compiled unless ``eager``)."""
    vllm_env()
    from cotdistill.teacher.engines.vllm_engine import VllmEngine

    return VllmEngine(
        str(path),
        engine_kwargs={
            "dtype": "bfloat16",
            "max_model_len": 1024,
            "enforce_eager": eager,
            "max_num_seqs": 256,
            "seed": 0,
            "distributed_executor_backend": "uni",
        },
        max_top_k=TOP_K,
    )


def transformers_engine(path: Path, *, dtype: str = "auto", threads: int = 0) -> Any:
    """The teacher's transformers backend with the service's defaults (one batch of all rows);
    ``threads`` is ``COTDISTILL_TEACHER_NUM_THREADS`` (0: torch's default, one per core)."""
    from cotdistill.teacher.engines.transformers_engine import TransformersEngine

    return TransformersEngine(str(path), dtype=dtype, max_batch_sequences=256, max_top_k=TOP_K, num_threads=threads)


async def sample(engine: Any, work: Workload, n: int = SAMPLES, max_tokens: int = MAX_TOKENS) -> list[Any]:
    """Every completion of the workload (one request, all prompts x n), in arrival order."""
    from cotdistill.teacher.engine import GenerateRequest, SamplingOptions

    options = SamplingOptions(
        n=n, temperature=TEMPERATURE, max_tokens=max_tokens, top_k_logprobs=TOP_K, seed=SEED, logprob_mode="raw"
    )
    request = GenerateRequest("bench-real", work.prompts, work.prompt_ids, options)
    return [c async for c in engine.generate(request)]

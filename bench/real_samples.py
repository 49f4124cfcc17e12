"""Real teacher top-k data for ``storage_real``: generated once, cached under .scratch.

``python -m bench.real_samples`` (or the first ``bench_storage_real`` run) samples the shared
workload (:mod:`bench.real_teacher`: 40 MultiArith questions x D=2 x 160 tokens, chat template,
temperature 0.7, top-20 raw logprobs) on the teacher's vLLM backend and keeps the exact float32
values. The KD loss also needs a student's log-probs at the teacher's candidate ids: a student of
the same vocabulary that knows less than the teacher is the same model teacher-forced on the same
rationale *without the question* (it has to guess every number), computed with transformers in
fp32 and gathered at the top-k ids. Everything lands in one ``.npz`` (+ texts in JSON).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.real_teacher import INSTRUCTION, MODEL, Workload, sample, scratch, vllm_engine, workload

CACHE_VERSION = 1  # bump when the workload changes, so a stale cache is not reused


@dataclass
class RealTopK:
    """Exact teacher samples: N sequences, T tokens in all, k candidates per token."""

    example_ids: list[str]
    sample_index: np.ndarray  # int32 (N,)
    prompts: list[str]
    rationales: list[str]
    finish_reasons: list[str]
    offsets: np.ndarray  # int64 (N+1,)
    token_ids: np.ndarray  # int32 (T,)
    token_logprobs: np.ndarray  # float32 (T,)
    top_ids: np.ndarray  # int32 (T, k), rank order
    top_logprobs: np.ndarray  # float32 (T, k)
    student_logprobs: np.ndarray  # float32 (T, k): the weak student at the teacher's ids
    source: str


def load_or_generate() -> RealTopK:
    """The cached data; the teacher's samples and the student's log-probs are cached apart."""
    root = scratch("storage_real")
    teacher, texts_path = root / f"teacher-v{CACHE_VERSION}.npz", root / f"texts-v{CACHE_VERSION}.json"
    student = root / f"student-v{CACHE_VERSION}.npz"
    work = None
    if not (teacher.exists() and texts_path.exists()):
        work = workload()
        generate(work, teacher, texts_path)
    arrays = dict(np.load(teacher))
    if not student.exists():
        start = time.perf_counter()
        texts = json.loads(texts_path.read_text())
        logprobs = student_logprobs(work or workload(), texts["rationale_ids"], arrays["offsets"], arrays["top_ids"])
        np.savez(student, student_logprobs=logprobs)
        print(f"real_samples: student log-probs in {time.perf_counter() - start:.0f} s", flush=True)
    texts = json.loads(texts_path.read_text())
    return RealTopK(
        example_ids=texts["example_ids"],
        prompts=texts["prompts"],
        rationales=texts["rationales"],
        finish_reasons=texts["finish_reasons"],
        source=texts["source"],
        student_logprobs=np.load(student)["student_logprobs"],
        **arrays,
    )


def generate(work: Workload, arrays_path: Path, texts_path: Path) -> None:
    """Sample the workload on the vLLM backend; exact values to ``arrays_path``, texts to JSON."""
    start = time.perf_counter()
    completions = asyncio.run(_sample_vllm(work))
    completions.sort(key=lambda c: (c.prompt_index, c.sample_index))
    print(f"real_samples: {len(completions)} samples in {time.perf_counter() - start:.0f} s", flush=True)
    lengths = [len(c.scores.token_ids) for c in completions]
    k = completions[0].scores.k
    np.savez(
        arrays_path,
        sample_index=np.asarray([c.sample_index for c in completions], np.int32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        token_ids=np.concatenate([np.asarray(c.scores.token_ids, np.int32) for c in completions]),
        token_logprobs=np.concatenate([np.asarray(c.scores.token_logprobs, np.float32) for c in completions]),
        top_ids=np.concatenate([np.asarray(c.scores.top_ids, np.int32).reshape(-1, k) for c in completions]),
        top_logprobs=np.concatenate(
            [np.asarray(c.scores.top_logprobs, np.float32).reshape(-1, k) for c in completions]
        ),
    )
    texts_path.write_text(
        json.dumps(
            {
                "example_ids": [work.ids[c.prompt_index] for c in completions],
                "prompts": [work.prompts[c.prompt_index] for c in completions],
                "rationales": [c.text for c in completions],
                "finish_reasons": [c.finish_reason for c in completions],
                "rationale_ids": [list(c.scores.token_ids) for c in completions],
                "source": f"{MODEL} (vLLM CPU backend, bf16) on {len(work.ids)} MultiArith train questions",
            }
        )
    )


async def _sample_vllm(work: Workload) -> list[Any]:
    engine = vllm_engine(work.model_dir, eager=True)
    await engine.start()
    try:
        return await sample(engine, work)
    finally:
        await engine.close()


def student_logprobs(
    work: Workload, rationale_ids: list[list[int]], offsets: np.ndarray, top_ids: np.ndarray
) -> np.ndarray:
    """(T, k) log-probs of the question-less student at the teacher's candidate ids.

    bf16 weights (3x the fp32 matmul speed on this AVX-512-BF16 CPU), log-softmax in fp32.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(work.model_dir)
    model = AutoModelForCausalLM.from_pretrained(work.model_dir, dtype=torch.bfloat16).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": INSTRUCTION}], tokenize=False, add_generation_prompt=True
    )
    prefix = tokenizer(text, add_special_tokens=False)["input_ids"]
    out = np.empty(top_ids.shape, np.float32)
    with torch.inference_mode():
        for i, tokens in enumerate(rationale_ids):
            ids = torch.tensor([list(prefix) + tokens])
            hidden = model.model(input_ids=ids).last_hidden_state[0, len(prefix) - 1 : len(prefix) - 1 + len(tokens)]
            logprobs = torch.log_softmax(model.lm_head(hidden).float(), dim=-1)
            rows = slice(int(offsets[i]), int(offsets[i + 1]))
            cand = torch.from_numpy(top_ids[rows].astype(np.int64)).clamp(min=0)
            out[rows] = logprobs.gather(1, cand).numpy()
    return out


if __name__ == "__main__":
    data = load_or_generate()
    print(f"{len(data.example_ids)} samples, {len(data.token_ids)} tokens, k={data.top_ids.shape[1]}: {data.source}")

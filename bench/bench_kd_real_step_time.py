"""Distribution matching on a real student and teacher: SFT + top-20 KD step vs SFT step.

Student SmolLM2-135M-Instruct (vocabulary 49,152), teacher Qwen2.5-Coder-0.5B-Instruct (151,936):
a cross-tokenizer pair, so every batch carries the teacher's top-20 aligned into the student's
vocabulary (alignment at setup). Data: 64 GSM8K train questions whose human rationales the
teacher read teacher-forced, keeping its real top-20 logprobs per token
(``bench.real_models.teacher_shards``; the lead's sampled Qwen shards can replace them). Same
recipe, batch 8, bf16 autocast, full fine-tune; the KD variant adds forward KL over the
tail-bucketed top-20 (``kd_weight`` 1). Each variant in its own process, alternating, best of
``ROUNDS``; figures: seconds per optimizer step over steps 2..N and peak RSS.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.real_models import LoadSampler, run_variant, student_dir, teacher_dir, teacher_shards, trainer_worker_env

THROUGHPUT = "bench.bench_trainer_real_throughput"
STEPS = 6
ROUNDS = 2
N_EXAMPLES = 64


def main() -> None:
    student, teacher = student_dir(), teacher_dir()
    shard = teacher_shards(teacher, N_EXAMPLES)
    variants: dict[str, dict[str, Any]] = {
        "sft": {"objective": {"sft_weight": 1.0, "kd_weight": 0.0}},
        "sft+kd": {"objective": {"sft_weight": 1.0, "kd_weight": 1.0, "top_k_mass": "tail_bucket"}},
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench-kd-real-") as tmp, LoadSampler() as load:
        for r in range(ROUNDS):
            for name, extra in variants.items():
                args = {
                    "model": str(student),
                    "steps": STEPS,
                    "data": str(shard),
                    "teacher_tokenizer": str(teacher),
                    "out": str(Path(tmp) / f"{name}-{r}"),
                    **extra,
                }
                runs[name].append(run_variant(THROUGHPUT, "ours", args, env=trainer_worker_env()))
                print(name, r, runs[name][-1], flush=True)
    step_s = {name: min(sum(x["step_seconds"]) / len(x["step_seconds"]) for x in rs) for name, rs in runs.items()}
    peak = {name: min(x["peak_rss_mib"] for x in rs) for name, rs in runs.items()}
    figures = {
        "seconds_per_step": step_s,
        "peak_rss_mib": peak,
        "memory_ratio": peak["sft+kd"] / peak["sft"],
        "runs": runs,
        "load_average_1m": load.summary(),
        "teacher_data": "teacher-forced Qwen2.5-Coder-0.5B-Instruct top-20 on GSM8K human rationales",
    }
    write_result(
        "kd_real_step_time",
        title="SFT + top-20 KD step vs SFT step, SmolLM2-135M student, Qwen2.5-0.5B teacher (cross-tokenizer)",
        metric="s/step",
        value=step_s["sft+kd"],
        baseline_name="SFT step",
        baseline_value=step_s["sft"],
        higher_is_better=False,
        goal="KD <= 1.15x SFT (ratio >= 0.87); peak memory <= 1.1x (figures.memory_ratio)",
        figures=figures,
    )


if __name__ == "__main__":
    main()

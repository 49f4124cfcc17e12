"""LoRA r=8 vs full fine-tuning on a real student: tokens/s and peak RSS.

SmolLM2-135M-Instruct, the same GSM8K data, batch 8, bf16 autocast, our recipe. LoRA adapts
every linear layer of the blocks (peft ``all-linear``) with rank 8; its base is frozen and kept
in bf16 (no fp32 master copy, no gradients, no AdamW state for it), and the LM head / embedding
gets no gradient. Each variant in its own process, alternating, best of ``ROUNDS``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.real_models import LoadSampler, gsm8k_jsonl, run_variant, student_dir, trainer_worker_env

THROUGHPUT = "bench.bench_trainer_real_throughput"
STEPS = 6
ROUNDS = 2
N_EXAMPLES = 160


def main() -> None:
    student = student_dir()
    runs: dict[str, list[dict[str, Any]]] = {"full": [], "lora": []}
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp, LoadSampler() as load:
        data = gsm8k_jsonl(Path(tmp) / "gsm8k.jsonl", N_EXAMPLES)
        for r in range(ROUNDS):
            for name in runs:
                args = {"model": str(student), "steps": STEPS, "data": str(data), "out": str(Path(tmp) / f"{name}{r}")}
                if name == "lora":
                    args["lora"] = 8
                runs[name].append(run_variant(THROUGHPUT, "ours", args, env=trainer_worker_env()))
                print(name, r, runs[name][-1], flush=True)
    tps = {name: max(x["tokens_per_second"] for x in rs) for name, rs in runs.items()}
    peak = {name: min(x["peak_rss_mib"] for x in rs) for name, rs in runs.items()}
    write_result(
        "lora_vs_full",
        title="LoRA r=8 vs full fine-tune tokens/s, SmolLM2-135M, batch 8, bf16 (our recipe)",
        metric="tokens/s",
        value=tps["lora"],
        baseline_name="full fine-tune",
        baseline_value=tps["full"],
        goal="LoRA faster (ratio > 1) and smaller (figures.peak_rss_mib)",
        figures={
            "tokens_per_second": tps,
            "peak_rss_mib": peak,
            "memory_ratio": peak["lora"] / peak["full"],
            "runs": runs,
            "load_average_1m": load.summary(),
        },
    )


if __name__ == "__main__":
    main()

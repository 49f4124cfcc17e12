"""Training throughput: our recipe vs TRL's SFTTrainer, same tiny model, data and machine.

Model: Llama-style, hidden 128, 4 layers (the size of the project's tiny teacher), built from
config; tokenizer: byte-level BPE (512) trained on the data. Data: 2,000 Fine-tune-CoT pairs of
the synthetic tasks (arithmetic 60%, last letters 30%, coin flip 10%; 50-110 tokens each) as
teacher-sample Parquet. Both train with batch 32, AdamW, completion-only loss, fp32, one torch
thread (the CI box has 2 cores shared with other jobs) for the same number of steps; the figure
is real (non-padding) tokens per second of ``train()`` wall time, best of the rounds (the
machine is shared, so the minimum time is the least disturbed one).

TRL runs its prompt-completion path (padding to the batch's longest, loss on the completion,
its fused LM head over completion positions only) with the same settings as ours: fp32 and no
gradient checkpointing (TRL 1.16 defaults to gradient checkpointing and bf16 autocast where
available, both slower for a model this small); "TRL padding_free" is reported as well.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import write_result

STEPS = 40
BATCH = 32
ROUNDS = 2
N_EXAMPLES = 2000


def build_fixture(
    root: Path, *, n: int = N_EXAMPLES, k: int = 20, hidden: int = 128, layers: int = 4
) -> dict[str, Any]:
    """Student model + Parquet samples (with a synthetic top-k in the student's vocabulary)."""
    from cotdistill.common.samples import SampleRecord, write_shard
    from cotdistill.common.tasks import generate_synthetic, render_student_pair
    from cotdistill.pipeline.tiny_models import build_causal_lm, train_tokenizer

    mix = {"arithmetic": 0.6, "last_letters": 0.3, "coin_flip": 0.1}
    examples = [e for task, share in mix.items() for e in generate_synthetic(task, int(n * share), seed=0)]
    pairs = [render_student_pair("ft_cot", e) for e in examples]
    tok = train_tokenizer([p + c for p, c in pairs], "byte_bpe", 512)
    model_dir = build_causal_lm(root / "student", tok, hidden_size=hidden, num_layers=layers, num_heads=4)
    rng = np.random.default_rng(0)
    records = []
    for e, (_, completion) in zip(examples, pairs, strict=True):
        ids = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        top = np.concatenate([np.asarray(ids)[:, None], rng.integers(0, len(tok), (len(ids), k - 1))], 1)
        lps = np.full((len(ids), k), math.log(0.2 / (k - 1)), dtype=np.float32)
        lps[:, 0] = math.log(0.8)
        records.append(
            SampleRecord(
                example_id=e.id,
                sample_index=0,
                prompt=e.question,
                rationale=e.rationale or "",
                prediction=e.answer,
                gold=e.answer,
                correct=True,
                token_ids=ids,
                top_k=k,
                top_ids=top.reshape(-1).tolist(),
                top_logprobs=lps.reshape(-1).tolist(),
            )
        )
    shard = write_shard(root / "samples" / "part-0.parquet", records, {"tokenizer_hash": _hash(tok)})
    lengths = [len(tok(p + c)["input_ids"]) + 1 for p, c in pairs]
    return {
        "model": model_dir,
        "samples": shard,
        "pairs": pairs,
        "tokenizer": tok,
        "mean_tokens": float(np.mean(lengths)),
    }


def _hash(tok: Any) -> str:
    from cotdistill.common.lm import tokenizer_content_hash

    return tokenizer_content_hash(tok)


def recipe_config(fixture: dict[str, Any], out: Path, **overrides: Any) -> Any:
    from cotdistill.trainer.config import RecipeConfig

    raw: dict[str, Any] = {
        "student": {"model": str(fixture["model"])},
        "data": {"train_paths": [str(fixture["samples"])], "packing": True},
        "hyperparameters": {"max_steps": STEPS, "batch_size": BATCH, "learning_rate": 1e-3, "max_grad_norm": 1.0},
        "output_dir": str(out),
        "log_every_steps": STEPS,
        "num_threads": 1,
    }
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return RecipeConfig.model_validate(raw)


class _Tokens:
    """Reporter that counts nothing but keeps the last metrics (the loop reports tokens/s)."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def on_step(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        self.metrics = metrics

    def on_checkpoint(self, *args: Any) -> None: ...

    def on_validation(self, *args: Any) -> None: ...

    def should_stop(self) -> bool:
        return False


def run_recipe(fixture: dict[str, Any], out: Path, **overrides: Any) -> float:
    """Seconds of ``train()`` for STEPS steps."""
    from cotdistill.trainer.recipe import TrainRecipe

    recipe = TrainRecipe(recipe_config(fixture, out, **overrides), _Tokens())
    recipe.setup()
    start = time.perf_counter()
    recipe.train()
    elapsed = time.perf_counter() - start
    recipe.cleanup()
    return elapsed


def run_trl(fixture: dict[str, Any], out: Path, **config: Any) -> float:
    """Seconds of ``SFTTrainer.train()`` for STEPS steps on the same pairs."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_list([{"prompt": p, "completion": c} for p, c in fixture["pairs"]])
    args = SFTConfig(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=BATCH,
        learning_rate=1e-3,
        max_grad_norm=1.0,
        lr_scheduler_type="cosine",
        logging_steps=STEPS,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        bf16=False,
        gradient_checkpointing=False,
        **config,
    )
    model = AutoModelForCausalLM.from_pretrained(fixture["model"])
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=fixture["tokenizer"])
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    random.seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        root = Path(tmp)
        fixture = build_fixture(root)
        tokens = STEPS * BATCH * fixture["mean_tokens"]
        times: dict[str, list[float]] = {"ours": [], "ours_bucketing": [], "trl": [], "trl_padding_free": []}
        for r in range(ROUNDS):
            times["ours"].append(run_recipe(fixture, root / f"o{r}"))
            times["trl"].append(run_trl(fixture, root / f"t{r}"))
            times["ours_bucketing"].append(run_recipe(fixture, root / f"b{r}", data={"packing": False}))
            times["trl_padding_free"].append(run_trl(fixture, root / f"p{r}", padding_free=True, max_length=None))
            print({name: [round(t, 1) for t in ts] for name, ts in times.items()}, flush=True)
    best = {name: tokens / min(ts) for name, ts in times.items()}
    write_result(
        "trainer_throughput",
        title="SFT training tokens/s: recipe vs TRL SFTTrainer (tiny Llama 128x4, batch 32, CPU 1 thread)",
        metric="tokens/s",
        value=best["ours"],
        baseline_name="TRL SFTTrainer (fp32, no grad checkpointing)",
        baseline_value=best["trl"],
        goal=">= 1.2x",
        figures={
            "tokens_per_second": best,
            "seconds_per_run": {name: [round(t, 2) for t in ts] for name, ts in times.items()},
            "steps": STEPS,
            "batch_size": BATCH,
            "mean_tokens_per_example": fixture["mean_tokens"],
            "ratio_vs_trl_padding_free": best["ours"] / best["trl_padding_free"],
        },
    )


if __name__ == "__main__":
    main()

"""Cost of distribution matching: KD step time and peak memory vs plain SFT, same recipe.

Same tiny Llama (hidden 128, 4 layers), data and batch (32) as the throughput benchmark; the
samples carry a top-20 per token. SFT: ``sft_weight=1``. KD: ``sft_weight=1, kd_weight=1``,
forward KL on the renormalized top-20 (the loop gathers the student's log-probs at the 20
candidate ids: no full-vocabulary teacher tensor). Each variant runs in a fresh process (so
memory figures do not mix), alternating, two rounds; one torch thread.

* step time: median seconds per optimizer step (forward, loss, backward, clip, AdamW);
* peak memory: peak resident memory while the recipe sets up and trains (model, data with the
  KD targets, optimizer state, activations), above the process's resident memory before setup
  (sampled every 2 ms; the interpreter and libraries are the same for both and excluded).
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import write_result

STEPS = 30
ROUNDS = 2
VARIANTS = {
    "sft": {"objective": {"sft_weight": 1.0, "kd_weight": 0.0}},
    "kd": {"objective": {"sft_weight": 1.0, "kd_weight": 1.0}},
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    import resource

    return pages * resource.getpagesize()


class _StepTimes:
    """Reporter that timestamps every optimizer step."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_step(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        self.stamps.append(time.perf_counter())

    def on_checkpoint(self, *args: Any) -> None: ...

    def on_validation(self, *args: Any) -> None: ...

    def should_stop(self) -> bool:
        return False


def child(variant: str, fixture_json: str, out: str) -> None:
    """Run one variant in this process; print its figures as JSON on the last line."""
    import torch

    from bench.bench_trainer_throughput import recipe_config
    from cotdistill.trainer.recipe import TrainRecipe

    torch.set_num_threads(1)
    fixture = json.loads(fixture_json)
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    reporter = _StepTimes()
    config = recipe_config(fixture, Path(out), **VARIANTS[variant], log_every_steps=1)
    config.hyperparameters.max_steps = STEPS
    recipe = TrainRecipe(config, reporter)
    recipe.setup()
    start = time.perf_counter()
    recipe.train()
    done.set()
    sampler.join()
    stamps = [start, *reporter.stamps]
    steps = [b - a for a, b in itertools.pairwise(stamps)][2:]  # skip warm-up steps
    print(json.dumps({"step_s": statistics.median(steps), "peak_bytes": peak[0] - base}))


def main() -> None:
    from bench.bench_trainer_throughput import build_fixture

    with tempfile.TemporaryDirectory(prefix="bench-kd-") as tmp:
        root = Path(tmp)
        fixture = build_fixture(root)
        fixture_json = json.dumps({"model": str(fixture["model"]), "samples": str(fixture["samples"])})
        results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
        for r in range(ROUNDS):
            for name in VARIANTS:
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.bench_kd_step",
                        "--child",
                        name,
                        fixture_json,
                        str(root / f"{name}{r}"),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=Path(__file__).resolve().parents[1],
                )
                results[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    step = {name: min(r["step_s"] for r in rs) for name, rs in results.items()}
    memory = {name: min(r["peak_bytes"] for r in rs) for name, rs in results.items()}
    write_result(
        "kd_step_time",
        title="KD (SFT + top-20 forward KL) step time vs SFT (tiny Llama 128x4, batch 32, CPU 1 thread)",
        metric="s/step",
        value=step["kd"],
        baseline_name="SFT step",
        baseline_value=step["sft"],
        higher_is_better=False,
        goal="KD <= 1.15x SFT (ratio >= 0.87)",
        figures={"kd_over_sft": step["kd"] / step["sft"], "runs": results},
    )
    write_result(
        "kd_peak_memory",
        title="KD peak training memory vs SFT (same run; resident memory above the pre-setup baseline)",
        metric="MiB",
        value=memory["kd"] / 2**20,
        baseline_name="SFT",
        baseline_value=memory["sft"] / 2**20,
        higher_is_better=False,
        goal="KD <= 1.1x SFT (ratio >= 0.91)",
        figures={"kd_over_sft": memory["kd"] / memory["sft"]},
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()

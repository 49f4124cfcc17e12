"""The GPU benchmark script's pieces, run on the CPU paths (the GPU run itself is bench/gpu/run.sh)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_trainer_step_measures_tokens_mfu_and_memory_on_cpu() -> None:
    from bench.gpu.trainer_gpu import measure, peak_tflops

    result = measure("tiny", "cpu", batch=2, seq=32, steps=2, warmup=1)
    assert result["tokens_per_second"] > 0 and result["peak_memory_gib"] > 0
    assert result["mfu"] is None  # no peak figure for a CPU
    assert result["final_loss"] == pytest.approx(result["final_loss"])  # finite
    assert peak_tflops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4)


def test_architectures_have_the_real_parameter_counts() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from bench.gpu.models import build_config

    with torch.device("meta"):
        qwen = AutoModelForCausalLM.from_config(build_config("qwen2.5-0.5b"))
        smol = AutoModelForCausalLM.from_config(build_config("smollm2-135m"))
    assert sum(p.numel() for p in qwen.parameters()) == pytest.approx(494e6, rel=0.01)
    assert sum(p.numel() for p in smol.parameters()) == pytest.approx(134.5e6, rel=0.01)


def test_run_script_skips_cleanly_without_cuda() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [str(REPO / "bench" / "gpu" / "run.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout

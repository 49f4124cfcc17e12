"""The GPU benchmark's training step on a real CUDA device (skipped without one)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_training_step_on_gpu_reports_mfu_and_memory() -> None:
    from bench.gpu.trainer_gpu import measure

    result = measure("smollm2-135m", "cuda", batch=4, seq=256, steps=3, warmup=1)
    assert result["tokens_per_second"] > 0 and result["peak_memory_gib"] > 0
    assert result["device"] != "cpu"

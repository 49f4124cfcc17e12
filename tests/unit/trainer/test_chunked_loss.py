"""The chunked LM head + objective equals the whole-tensor objective, values and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional

from cotdistill.trainer.chunked_loss import auto_chunk_rows, chunked_head_objective
from cotdistill.trainer.objectives import ObjectiveConfig, distillation_objective


def _problem(seed: int, n: int = 13, h: int = 8, v: int = 40, k: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64)
    weight = torch.randn(v, h, generator=g, dtype=torch.float64)
    bias = torch.randn(v, generator=g, dtype=torch.float64)
    labels = torch.randint(0, v, (n,), generator=g)
    ids = torch.stack([torch.randperm(v, generator=g)[:k] for _ in range(n)])
    lps = torch.randn(n, v, generator=g, dtype=torch.float64).log_softmax(-1).gather(-1, ids)
    lps[1, 2:] = -math.inf  # a position with fewer candidates
    lps[4] = -math.inf  # a position without any (not counted in the KD mean)
    return {"hidden": hidden, "weight": weight, "bias": bias, "labels": labels, "ids": ids, "lps": lps}


def _grads(loss: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, tensors))


@pytest.mark.parametrize("chunk_rows", [1, 3, 13, 1000])
@pytest.mark.parametrize(
    "objective",
    [
        ObjectiveConfig(),
        ObjectiveConfig(sft_weight=0.5, kd_weight=1.0, divergence="forward_kl", top_k_mass="tail_bucket"),
        ObjectiveConfig(
            sft_weight=1.0, kd_weight=0.7, divergence="reverse_kl", top_k_mass="renormalize", kd_temperature=2.0
        ),
        ObjectiveConfig(sft_weight=0.0, kd_weight=1.0, divergence="jsd", jsd_beta=0.3, top_k_mass="tail_bucket"),
    ],
    ids=["sft", "sft+forward-kl-tail", "sft+reverse-kl-T2", "jsd-only"],
)
def test_chunked_objective_equals_the_full_objective_with_its_gradients(
    chunk_rows: int, objective: ObjectiveConfig
) -> None:
    p = _problem(seed=chunk_rows)
    leaves = [p[name].clone().requires_grad_(True) for name in ("hidden", "weight", "bias")]
    logits = functional.linear(*leaves)
    want, want_parts = distillation_objective(logits, p["labels"], p["ids"], p["lps"], objective)
    want_grads = _grads(want, leaves)

    leaves2 = [p[name].clone().requires_grad_(True) for name in ("hidden", "weight", "bias")]
    got, got_parts = chunked_head_objective(
        leaves2[0], leaves2[1], leaves2[2], p["labels"], p["ids"], p["lps"], objective, chunk_rows=chunk_rows
    )
    got_grads = _grads(got * 3.0, leaves2)  # the backward scales by the incoming gradient

    assert got.item() == pytest.approx(want.item(), rel=1e-6, abs=1e-9)
    assert set(got_parts) == set(want_parts)
    for name in want_parts:
        assert got_parts[name].item() == pytest.approx(want_parts[name].item(), rel=1e-6, abs=1e-9)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(g, 3.0 * w, rtol=1e-6, atol=1e-9)


def test_frozen_weight_gets_no_gradient_and_no_grad_mode_builds_no_graph() -> None:
    p = _problem(seed=5)
    hidden = p["hidden"].clone().requires_grad_(True)
    weight = p["weight"]  # frozen (LoRA): only the hidden states need a gradient
    loss, _ = chunked_head_objective(hidden, weight, None, p["labels"], None, None, ObjectiveConfig(), chunk_rows=4)
    (grad,) = torch.autograd.grad(loss, [hidden])
    want, _ = distillation_objective(functional.linear(hidden, weight), p["labels"], None, None, ObjectiveConfig())
    (want_grad,) = torch.autograd.grad(want, [hidden])
    assert torch.allclose(grad, want_grad, rtol=1e-6, atol=1e-9)
    with torch.no_grad():
        value, _ = chunked_head_objective(
            hidden, weight, None, p["labels"], None, None, ObjectiveConfig(), chunk_rows=4
        )
    assert not value.requires_grad and value.item() == pytest.approx(want.item(), rel=1e-6)


def test_no_supervised_positions_give_a_zero_loss_and_zero_gradients() -> None:
    hidden = torch.zeros(0, 8, requires_grad=True)
    weight = torch.randn(40, 8, requires_grad=True)
    loss, parts = chunked_head_objective(
        hidden, weight, None, torch.zeros(0, dtype=torch.long), None, None, ObjectiveConfig(), chunk_rows=4
    )
    loss.backward()
    assert loss.item() == 0.0 and parts["sft"].item() == 0.0
    assert weight.grad is not None and not weight.grad.any()


def test_bf16_projection_stays_close_to_fp32() -> None:
    p = _problem(seed=9, n=64, h=32, v=500)
    hidden, weight = p["hidden"].float(), p["weight"].float() * 0.2
    full, _ = distillation_objective(functional.linear(hidden, weight), p["labels"], None, None, ObjectiveConfig())
    bf16, _ = chunked_head_objective(
        hidden, weight, None, p["labels"], None, None, ObjectiveConfig(), chunk_rows=16, compute_dtype=torch.bfloat16
    )
    assert bf16.dtype == torch.float32
    assert bf16.item() == pytest.approx(full.item(), rel=2e-2)


def test_chunks_stay_within_the_memory_budget() -> None:
    for vocab in (512, 49_152, 151_936, 262_144):
        rows = auto_chunk_rows(vocab)
        assert rows >= 16
        assert rows * vocab * 4 <= max(64 << 20, 16 * vocab * 4)
        assert auto_chunk_rows(vocab, "cuda") >= rows  # fewer, larger chunks where launches cost

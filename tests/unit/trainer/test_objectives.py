"""Objectives: mathematical properties on random tensors (hypothesis) and exact limits."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional

from cotdistill.trainer.objectives import (
    ObjectiveConfig,
    distillation_objective,
    divergence,
    generalized_jsd,
    kl,
    token_nll,
    topk_distillation,
)

SETTINGS = settings(max_examples=15, deadline=None)


def _logits(seed: int, n: int, v: int, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g, dtype=torch.float64) * scale


def _full(kind: str, p_logits: torch.Tensor, q_logits: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """Reference divergences over the full vocabulary, written out directly."""
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    if kind == "forward_kl":
        return (p * (p.log() - q.log())).sum(-1).mean()
    if kind == "reverse_kl":
        return (q * (q.log() - p.log())).sum(-1).mean()
    m = beta * p + (1 - beta) * q
    return (beta * (p * (p.log() - m.log())).sum(-1) + (1 - beta) * (q * (q.log() - m.log())).sum(-1)).mean()


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("mass", ["renormalize", "tail_bucket"])
@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), v=st.integers(2, 30), beta=st.floats(0.05, 0.95))
def test_topk_with_k_equal_vocab_is_the_full_divergence(
    kind: str, mass: str, seed: int, n: int, v: int, beta: float
) -> None:
    teacher, student = _logits(seed, n, v), _logits(seed + 1, n, v)
    # Top-k in a shuffled order: the loss must not depend on candidate order.
    order = torch.stack([torch.randperm(v, generator=torch.Generator().manual_seed(seed + r)) for r in range(n)])
    ids = order
    lps = teacher.log_softmax(-1).gather(-1, ids)
    got = topk_distillation(student, ids, lps, kind=kind, mass=mass, beta=beta)  # type: ignore[arg-type]
    want = _full(kind, teacher, student, beta)
    assert got.item() == pytest.approx(want.item(), rel=1e-6, abs=1e-8)


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), v=st.integers(3, 30), k=st.integers(1, 3))
def test_divergences_are_nonnegative_and_zero_at_equality(seed: int, n: int, v: int, k: int) -> None:
    logits = _logits(seed, n, v)
    lp = logits.log_softmax(-1)
    ids = lp.topk(k, -1).indices
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        for mass in ("renormalize", "tail_bucket"):
            same = topk_distillation(logits, ids, lp.gather(-1, ids), kind=kind, mass=mass)  # type: ignore[arg-type]
            assert abs(same.item()) < 1e-9
            other = topk_distillation(_logits(seed + 7, n, v), ids, lp.gather(-1, ids), kind=kind, mass=mass)  # type: ignore[arg-type]
            assert other.item() >= -1e-9


@SETTINGS
@given(seed=st.integers(0, 10_000), m=st.integers(2, 20))
def test_jsd_is_symmetric_at_half_and_bounded(seed: int, m: int) -> None:
    p, q = _logits(seed, 4, m).log_softmax(-1), _logits(seed + 1, 4, m).log_softmax(-1)
    assert torch.allclose(generalized_jsd(p, q, 0.5), generalized_jsd(q, p, 0.5), atol=1e-12)
    for beta in (0.1, 0.5, 0.9):
        bound = -beta * math.log(beta) - (1 - beta) * math.log(1 - beta)
        assert (generalized_jsd(p, q, beta) <= bound + 1e-9).all()
    # Reverse KL is forward KL with the arguments swapped.
    assert torch.allclose(divergence(p, q, "reverse_kl"), kl(q, p))


def test_one_hot_targets_reduce_forward_kl_to_token_nll() -> None:
    logits = _logits(0, 5, 12)
    labels = torch.tensor([1, 4, 7, 0, 11])
    ids = torch.zeros(5, 3, dtype=torch.long)
    ids[:, 0] = labels
    lps = torch.full((5, 3), -math.inf, dtype=torch.float64)
    lps[:, 0] = 0.0
    nll = token_nll(logits.log_softmax(-1), labels)
    for mass in ("renormalize", "tail_bucket"):
        got = topk_distillation(logits, ids, lps, kind="forward_kl", mass=mass)  # type: ignore[arg-type]
        assert got.item() == pytest.approx(nll.item(), rel=1e-9)
    assert nll.item() == pytest.approx(functional.cross_entropy(logits, labels).item(), rel=1e-12)


def test_absent_candidates_are_ignored_and_gradients_stay_finite() -> None:
    student = _logits(1, 4, 10).requires_grad_()
    ids = torch.tensor([[2, 3, 0], [5, 0, 0], [1, 2, 3], [0, 0, 0]])
    lps = torch.tensor(
        [[-0.5, -1.2, -math.inf], [-0.1, -math.inf, -math.inf], [-0.3, -2.0, -3.0], [-math.inf] * 3],
        dtype=torch.float64,
    )
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        for mass in ("renormalize", "tail_bucket"):
            student.grad = None
            loss = topk_distillation(student, ids, lps, kind=kind, mass=mass)  # type: ignore[arg-type]
            loss.backward()
            assert torch.isfinite(loss)
            assert student.grad is not None and torch.isfinite(student.grad).all()
            assert student.grad[3].abs().sum() == 0  # a row with no candidate contributes nothing
    # Absent slots do not change the value: same as dropping the column.
    a = topk_distillation(student, ids[:1, :2], lps[:1, :2])
    b = topk_distillation(student, ids[:1], lps[:1])
    assert a.item() == pytest.approx(b.item())


def test_temperature_scales_student_logits() -> None:
    student, teacher = _logits(2, 3, 8), _logits(3, 3, 8)
    ids = torch.arange(8).expand(3, 8)
    lps = teacher.log_softmax(-1)
    got = topk_distillation(student, ids, lps, temperature=2.0)
    assert got.item() == pytest.approx(_full("forward_kl", teacher, student / 2.0).item(), rel=1e-6)


def test_mixture_is_the_weighted_sum_of_its_parts() -> None:
    student, teacher = _logits(4, 6, 9), _logits(5, 6, 9)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    ids = teacher.topk(4, -1).indices
    lps = teacher.log_softmax(-1).gather(-1, ids)
    weights = ObjectiveConfig(sft_weight=0.3, kd_weight=2.0, divergence="jsd", top_k_mass="tail_bucket", jsd_beta=0.3)
    loss, parts = distillation_objective(student, labels, ids, lps, weights)
    assert loss.item() == pytest.approx(0.3 * parts["sft"].item() + 2.0 * parts["kd"].item(), rel=1e-9)
    sft_only, sft_parts = distillation_objective(student, labels, None, None, ObjectiveConfig())
    assert "kd" not in sft_parts and sft_only.item() == pytest.approx(parts["sft"].item())
    with pytest.raises(ValueError, match="kd_weight"):
        distillation_objective(student, labels, None, None, ObjectiveConfig(kd_weight=1.0))

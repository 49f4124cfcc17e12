"""On-policy objectives: the GKD step schedule, the student's own support, the divergences on it,
and MiniLLM's sequence-level reverse KL estimate (properties on random tensors, hypothesis)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cotdistill.trainer.on_policy import (
    is_on_policy_step,
    on_policy_divergence,
    sequence_reverse_kl,
    student_support,
)

SETTINGS = settings(max_examples=15, deadline=None)


def _logits(seed: int, n: int, v: int, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g, dtype=torch.float64) * scale


def _full_reverse_kl(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    p, q = teacher.softmax(-1), student.softmax(-1)
    return (q * (q.log() - p.log())).sum(-1).mean()


@SETTINGS
@given(fraction=st.floats(0.05, 0.95), seed=st.integers(0, 1000))
def test_on_policy_steps_are_a_deterministic_bernoulli_of_the_fraction(fraction: float, seed: int) -> None:
    draws = [is_on_policy_step(s, fraction, seed) for s in range(4000)]
    assert abs(sum(draws) / len(draws) - fraction) < 0.035  # ~4.5 sigma at p = 0.5
    assert draws == [is_on_policy_step(s, fraction, seed) for s in range(4000)]  # ranks and resumes agree
    assert draws != [is_on_policy_step(s, fraction, seed + 1) for s in range(4000)]


def test_on_policy_fraction_limits_and_range() -> None:
    assert not any(is_on_policy_step(s, 0.0, 1) for s in range(100))
    assert all(is_on_policy_step(s, 1.0, 1) for s in range(100))
    with pytest.raises(ValueError, match="fraction"):
        is_on_policy_step(0, 1.5, 0)


@pytest.mark.parametrize("mass", ["renormalize", "tail_bucket"])
@pytest.mark.parametrize("kind", ["reverse_kl", "jsd", "forward_kl"])
@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 5), v=st.integers(2, 25))
def test_on_the_whole_student_support_it_is_the_full_divergence(
    kind: str, mass: str, seed: int, n: int, v: int
) -> None:
    from cotdistill.trainer.objectives import topk_distillation

    teacher, student = _logits(seed, n, v), _logits(seed + 1, n, v)
    ids = student_support(student, v)
    got = on_policy_divergence(student, ids, teacher.log_softmax(-1).gather(-1, ids), kind=kind, mass=mass)  # type: ignore[arg-type]
    perm = torch.stack([torch.randperm(v, generator=torch.Generator().manual_seed(seed + r)) for r in range(n)])
    reference = topk_distillation(student, perm, teacher.log_softmax(-1).gather(-1, perm), kind=kind, mass=mass)  # type: ignore[arg-type]
    assert got.item() == pytest.approx(reference.item(), rel=1e-6, abs=1e-9)
    if kind == "reverse_kl":
        assert got.item() == pytest.approx(_full_reverse_kl(teacher, student).item(), rel=1e-6, abs=1e-9)


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 5), v=st.integers(3, 25), m=st.integers(1, 3))
def test_student_support_is_its_top_m_and_carries_no_gradient(seed: int, n: int, v: int, m: int) -> None:
    logits = _logits(seed, n, v).requires_grad_()
    ids = student_support(logits, m)
    assert ids.shape == (n, m) and not ids.requires_grad
    top = logits.gather(-1, ids)
    rest = logits.masked_fill(torch.zeros_like(logits, dtype=torch.bool).scatter(-1, ids, True), float("-inf"))
    assert (top.min(-1).values >= rest.max(-1).values).all()


@pytest.mark.parametrize("kind", ["reverse_kl", "jsd"])
@SETTINGS
@given(seed=st.integers(0, 10_000), v=st.integers(3, 20))
def test_a_gradient_step_on_the_student_support_moves_the_student_towards_the_teacher(
    kind: str, seed: int, v: int
) -> None:
    teacher = _logits(seed, 4, v)
    student = _logits(seed + 1, 4, v).requires_grad_()
    ids = student_support(student, v)
    loss = on_policy_divergence(student, ids, teacher.log_softmax(-1).gather(-1, ids), kind=kind)  # type: ignore[arg-type]
    loss.backward()
    assert student.grad is not None
    before = _full_reverse_kl(teacher, student.detach())
    after = _full_reverse_kl(teacher, student.detach() - 1e-3 * student.grad)
    assert after.item() < before.item()
    assert on_policy_divergence(teacher, ids, teacher.log_softmax(-1).gather(-1, ids), kind=kind).item() == (  # type: ignore[arg-type]
        pytest.approx(0.0, abs=1e-9)
    )


def test_positions_without_a_teacher_score_are_left_out() -> None:
    teacher, student = _logits(1, 3, 6), _logits(2, 3, 6).requires_grad_()
    ids = student_support(student, 6)
    lps = teacher.log_softmax(-1).gather(-1, ids)
    masked = lps.clone()
    masked[1] = float("-inf")  # e.g. a student token the alignment could not pair with a teacher position
    got = on_policy_divergence(student, ids, masked)
    want = on_policy_divergence(student[[0, 2]], ids[[0, 2]], lps[[0, 2]])
    assert got.item() == pytest.approx(want.item(), rel=1e-9)
    got.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad[1].abs().sum() == 0


def test_sequence_reverse_kl_is_an_unbiased_estimate_on_samples() -> None:
    # Three independent positions: the sequence KL is the sum of the per-position KLs.
    g = torch.Generator().manual_seed(0)
    student, teacher = (
        torch.randn(3, 5, generator=g, dtype=torch.float64),
        torch.randn(3, 5, generator=g, dtype=torch.float64),
    )
    q_lp, p_lp = student.log_softmax(-1), teacher.log_softmax(-1)
    exact = (q_lp.exp() * (q_lp - p_lp)).sum()
    samples = torch.multinomial(q_lp.exp(), 40_000, replacement=True, generator=g).T  # (S, 3)
    pos = torch.arange(3).expand_as(samples)
    est = sequence_reverse_kl(q_lp[pos, samples], p_lp[pos, samples], torch.ones_like(samples, dtype=torch.bool))
    assert est.mean().item() == pytest.approx(exact.item(), abs=0.03)
    half = sequence_reverse_kl(q_lp[pos, samples], p_lp[pos, samples], pos < 2)  # the last position masked
    assert half.mean().item() == pytest.approx((q_lp.exp() * (q_lp - p_lp))[:2].sum().item(), abs=0.03)

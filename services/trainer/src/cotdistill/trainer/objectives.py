"""Training objectives as pure functions of tensors: sample matching and top-k distribution matching.

Shapes: N is the number of supervised token positions (the loop gathers only completion
positions, so N is not B*T), V the student vocabulary, k the teacher candidates per position.

The teacher is known only through its top-k candidates per token (ids already mapped into the
student vocabulary, logprobs in nats; a missing candidate has logprob ``-inf``). The
teacher's full-vocabulary distribution is never built: the student's log-probs are gathered at
the k candidate ids, an (N, k) tensor. Two ways to handle the mass outside the top-k:

* ``renormalize``: both distributions are renormalized over the k candidates;
* ``tail_bucket``: a (k+1)-th bucket holds ``1 - sum(top-k)`` for each side.

With k = V both reduce to the exact full-vocabulary divergence (tested). A one-hot target (the
alignment's fallback for unmatched student tokens) is always scored with the tail bucket, where
forward KL equals the token's NLL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional

from cotdistill.common.training_spec import Divergence, ObjectiveConfig, TopKMass

__all__ = ["Divergence", "ObjectiveConfig", "TopKMass"]  # re-exported: the loss code's names for them

_TINY = 1e-12
ABSENT_LOGPROB = -1e4  # "candidate absent": exp() underflows to exactly 0 in fp32


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits in fp32 for the softmax (the loss is sensitive); fp64 stays fp64."""
    return x if x.dtype == torch.float64 else x.float()


def token_nll(student_logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sample matching: mean negative log-likelihood of the teacher's tokens.

    student_logprobs: (N, V) log-softmax of the student's logits.
    labels: (N,) int64 target ids in [0, V).
    Returns a scalar: ``-mean_n log q(labels[n])``.
    """
    if labels.numel() == 0:
        return student_logprobs.sum() * 0.0
    return -student_logprobs.gather(-1, labels.unsqueeze(-1)).squeeze(-1).mean()


def topk_distributions(
    student_logprobs: torch.Tensor, teacher_ids: torch.Tensor, teacher_logprobs: torch.Tensor, mass: TopKMass
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher and student log-distributions over the k candidates plus a tail bucket.

    student_logprobs: (N, V) student log-softmax (already temperature-scaled).
    teacher_ids: (N, k) int64 candidate ids in the student vocabulary (any valid id where absent).
    teacher_logprobs: (N, k) float teacher logprobs; ``-inf`` marks an absent candidate.
    Returns ``(log_p, log_q)``, each (N, k+1). With ``renormalize`` both sides are renormalized
    over the present candidates and the last column is an empty bucket (probability 0 on both
    sides, so it adds nothing); with ``tail_bucket`` it holds ``1 - sum(top-k)`` of each side.

    One-hot rows (a single candidate with teacher logprob 0: the alignment's fallback) always
    use the tail bucket: renormalizing a student over one candidate would make every divergence
    0, whereas the two buckets {token, rest} give exactly the token NLL for forward KL.
    """
    present = torch.isfinite(teacher_logprobs)
    # Absent candidates get a large finite negative logprob instead of -inf: exp() is exactly 0,
    # and logsumexp/logaddexp stay finite, so no NaN reaches the gradients.
    s = student_logprobs.gather(-1, teacher_ids).masked_fill(~present, ABSENT_LOGPROB)
    t = teacher_logprobs.to(student_logprobs.dtype).masked_fill(~present, ABSENT_LOGPROB)
    if mass not in ("renormalize", "tail_bucket"):
        raise ValueError(f"unknown top-k mass handling {mass!r}")
    tail_p, tail_q = torch.cat([t, _log_tail(t)], -1), torch.cat([s, _log_tail(s)], -1)
    if mass == "tail_bucket":
        return tail_p, tail_q
    empty = torch.full_like(t[:, :1], ABSENT_LOGPROB)
    renorm_p = torch.cat([t - torch.logsumexp(t, -1, keepdim=True), empty], -1)
    renorm_q = torch.cat([s - torch.logsumexp(s, -1, keepdim=True), empty], -1)
    one_hot = ((present.sum(-1) == 1) & (t.max(-1).values == 0)).unsqueeze(-1)
    return torch.where(one_hot, tail_p, renorm_p), torch.where(one_hot, tail_q, renorm_q)


def _log_tail(logprobs: torch.Tensor) -> torch.Tensor:
    """log(1 - sum exp(logprobs)) per row, (N, 1); clamped so a full top-k gives a ~0 bucket."""
    covered = torch.exp(torch.logsumexp(logprobs, -1, keepdim=True)).clamp(max=1.0)
    return torch.log((1.0 - covered).clamp(min=_TINY))


def kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row: ``sum_i p_i (log p_i - log q_i)``, with 0 log 0 = 0.

    log_p, log_q: (N, m) log-probabilities (``-inf`` allowed where p is 0).
    Returns (N,).
    """
    p = log_p.exp()
    diff = torch.where(p > 0, log_p - log_q.clamp(min=math.log(_TINY)), torch.zeros_like(log_p))
    return (p * diff).sum(-1)


def generalized_jsd(log_p: torch.Tensor, log_q: torch.Tensor, beta: float) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence (GKD, Agarwal et al. 2024) per row.

    ``m = beta p + (1 - beta) q``; ``JSD_beta = beta KL(p || m) + (1 - beta) KL(q || m)``.
    Symmetric when beta = 0.5; bounded by ``-beta log beta - (1-beta) log(1-beta)``.
    log_p, log_q: (N, m). Returns (N,).
    """
    if not 0.0 < beta < 1.0:
        raise ValueError(f"jsd beta must be in (0, 1), got {beta}")
    log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log(1.0 - beta))
    return beta * kl(log_p, log_m) + (1.0 - beta) * kl(log_q, log_m)


def divergence(log_p: torch.Tensor, log_q: torch.Tensor, kind: Divergence, beta: float = 0.5) -> torch.Tensor:
    """Teacher ``p`` vs student ``q`` per row: forward KL(p||q), reverse KL(q||p) or JSD_beta.

    log_p, log_q: (N, m). Returns (N,).
    """
    if kind == "forward_kl":
        return kl(log_p, log_q)
    if kind == "reverse_kl":
        return kl(log_q, log_p)
    if kind == "jsd":
        return generalized_jsd(log_p, log_q, beta)
    raise ValueError(f"unknown divergence {kind!r}")


def topk_distillation(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    *,
    kind: Divergence = "forward_kl",
    mass: TopKMass = "renormalize",
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Distribution matching against the teacher's top-k: mean divergence over positions.

    student_logits: (N, V) raw logits. teacher_ids: (N, k) int64 in [0, V).
    teacher_logprobs: (N, k) teacher logprobs (``-inf`` = absent candidate).
    temperature: divides the student's logits (the teacher's logprobs are used as sampled).
    Returns a scalar; positions with no present candidate contribute 0 and are not counted.
    """
    logprobs = functional.log_softmax(_at_least_fp32(student_logits) / temperature, dim=-1)
    return topk_distillation_from_logprobs(logprobs, teacher_ids, teacher_logprobs, kind=kind, mass=mass, beta=beta)


def topk_distillation_from_logprobs(
    student_logprobs: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    *,
    kind: Divergence = "forward_kl",
    mass: TopKMass = "renormalize",
    beta: float = 0.5,
) -> torch.Tensor:
    """:func:`topk_distillation` on precomputed student log-softmax (N, V): shares it with the NLL."""
    rows = kd_rows(teacher_logprobs)
    total = topk_divergence_sum(student_logprobs, teacher_ids, teacher_logprobs, kind=kind, mass=mass, beta=beta)
    return total / max(int(rows.sum()), 1)


def kd_rows(teacher_logprobs: torch.Tensor) -> torch.Tensor:
    """(N,) bool: positions with at least one teacher candidate (the rows KD averages over)."""
    return torch.isfinite(teacher_logprobs).any(-1)


def topk_divergence_sum(
    student_logprobs: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    *,
    kind: Divergence = "forward_kl",
    mass: TopKMass = "renormalize",
    beta: float = 0.5,
) -> torch.Tensor:
    """Sum (not mean) of the per-position divergence over positions that have a candidate.

    A sum so that chunks of positions can be scored separately and added up
    (:mod:`cotdistill.trainer.chunked_loss`); divide by ``kd_rows(...).sum()`` for the mean.
    """
    valid = kd_rows(teacher_logprobs)
    if not bool(valid.all()):
        # Rows without any candidate carry no teacher signal: drop them rather than mask (no NaN).
        student_logprobs, teacher_ids, teacher_logprobs = (
            student_logprobs[valid],
            teacher_ids[valid],
            teacher_logprobs[valid],
        )
    if teacher_ids.numel() == 0:
        return student_logprobs.sum() * 0.0
    log_p, log_q = topk_distributions(student_logprobs, teacher_ids, teacher_logprobs, mass)
    return divergence(log_p, log_q, kind, beta).sum()


def distillation_objective(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_ids: torch.Tensor | None,
    teacher_logprobs: torch.Tensor | None,
    weights: ObjectiveConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted mixture of sample matching and top-k distribution matching.

    student_logits: (N, V); labels: (N,) int64; teacher_ids / teacher_logprobs: (N, k) or None.
    Returns ``(loss, parts)`` with parts ``{"sft": nll, "kd": divergence}`` (detached). The
    log-softmax is computed once and shared when the temperature is 1, so KD adds only the
    (N, k) gather and the divergence on top of SFT. This materializes the whole (N, V) tensor;
    :func:`cotdistill.trainer.chunked_loss.chunked_head_objective` computes the same value a
    chunk of positions at a time.
    """
    if weights.kd_weight > 0 and (teacher_ids is None or teacher_logprobs is None):
        raise ValueError("kd_weight > 0 needs teacher_ids and teacher_logprobs")
    counts = ObjectiveCounts.of(labels, teacher_logprobs if weights.kd_weight > 0 else None)
    nll_sum, kd_sum = objective_sums(student_logits, labels, teacher_ids, teacher_logprobs, weights)
    return combine(nll_sum, kd_sum, counts, weights)


@dataclass(frozen=True)
class ObjectiveCounts:
    """Denominators of the two means: supervised positions, and those with a teacher candidate."""

    tokens: int
    kd_rows: int

    @classmethod
    def of(cls, labels: torch.Tensor, teacher_logprobs: torch.Tensor | None) -> ObjectiveCounts:
        rows = int(kd_rows(teacher_logprobs).sum()) if teacher_logprobs is not None else 0
        return cls(int(labels.numel()), rows)


def objective_sums(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_ids: torch.Tensor | None,
    teacher_logprobs: torch.Tensor | None,
    weights: ObjectiveConfig,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sums over positions of the token NLL and of the top-k divergence (None without KD).

    student_logits: (n, V), any float dtype (the softmax runs in fp32 or better).
    Sums, not means, so any split of the N positions into chunks adds up to the same value.
    """
    logprobs = functional.log_softmax(_at_least_fp32(student_logits), dim=-1)
    nll_sum = -logprobs.gather(-1, labels.unsqueeze(-1)).sum() if labels.numel() else logprobs.sum() * 0.0
    if weights.kd_weight <= 0 or teacher_ids is None or teacher_logprobs is None:
        return nll_sum, None
    kd_logprobs = (
        logprobs
        if weights.kd_temperature == 1.0
        else functional.log_softmax(_at_least_fp32(student_logits) / weights.kd_temperature, dim=-1)
    )
    kd_sum = topk_divergence_sum(
        kd_logprobs,
        teacher_ids,
        teacher_logprobs,
        kind=weights.divergence,
        mass=weights.top_k_mass,
        beta=weights.jsd_beta,
    )
    return nll_sum, kd_sum


def combine(
    nll_sum: torch.Tensor, kd_sum: torch.Tensor | None, counts: ObjectiveCounts, weights: ObjectiveConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sft_weight * mean NLL + kd_weight * mean divergence`` from the sums; parts detached."""
    nll = nll_sum / max(counts.tokens, 1)
    loss = weights.sft_weight * nll if weights.sft_weight else nll.detach() * 0.0
    parts = {"sft": nll.detach()}
    if kd_sum is not None:
        kd = kd_sum / max(counts.kd_rows, 1)
        loss = loss + weights.kd_weight * kd
        parts["kd"] = kd.detach()
    return loss, parts

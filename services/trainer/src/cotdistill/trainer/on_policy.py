"""On-policy distillation objectives (GKD, Agarwal et al. 2024; MiniLLM, Gu et al. 2024) as pure functions.

On an on-policy step the student samples completions, the teacher scores the student's tokens
(teacher forcing through ``Score``), and the student minimizes a divergence to the teacher at every
position of its own samples. No gradient flows through the sampling: as in GKD, the samples are
data, and the loss is the per-token divergence on them.

Shapes: B sequences, N supervised positions (the sampled completion tokens that have a teacher
distribution), V the student vocabulary, k candidates per position.

Which candidates a position's divergence runs over (its *support*):

* ``teacher_topk``: the teacher's top-k at that position, mapped into the student vocabulary (the
  cross-tokenizer alignment of the off-policy KD): works for any teacher/student pair;
* ``student_topk``: the student's own top-k (:func:`student_support`), with the teacher's logprobs
  of exactly those ids (``Score`` candidate ids): the support where a reverse KL puts its weight,
  so the mode-seeking term sees the student's mistakes; needs a teacher sharing the student's
  vocabulary and a replica that scores candidates.

The divergences themselves are :func:`cotdistill.trainer.objectives.topk_distillation`'s (forward
KL, reverse KL = MiniLLM's single-step term, generalized JSD = GKD's), so the same mass handling
(``renormalize`` / ``tail_bucket``) applies. :func:`sequence_reverse_kl` is MiniLLM's
sequence-level quantity, estimated on the samples; it is reported, not optimized (MiniLLM's
policy-gradient term for it is not implemented).
"""

from __future__ import annotations

import hashlib
from typing import Literal

import torch

from cotdistill.trainer.objectives import Divergence, TopKMass, topk_distillation

Support = Literal["teacher_topk", "student_topk"]


def is_on_policy_step(step: int, fraction: float, seed: int) -> bool:
    """GKD's lambda: whether optimizer step ``step`` (0-based) trains on the student's own samples.

    A Bernoulli(``fraction``) draw that depends only on (``seed``, ``step``): every data-parallel
    rank and a run resumed from a checkpoint make the same choice without talking to each other.
    ``fraction`` 0 never and 1 always.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if fraction == 0.0:
        return False
    if fraction == 1.0:
        return True
    digest = hashlib.sha256(f"on-policy:{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def student_support(student_logits: torch.Tensor, m: int) -> torch.Tensor:
    """The student's own top-``m`` candidate ids per position, (N, m) int64, no gradient.

    student_logits: (N, V). Ties break towards the lower id (torch.topk's order), so the support
    of a position is a function of its logits alone.
    """
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    return student_logits.detach().topk(min(m, student_logits.shape[-1]), dim=-1).indices


def on_policy_divergence(
    student_logits: torch.Tensor,
    support_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    *,
    kind: Divergence = "reverse_kl",
    beta: float = 0.5,
    mass: TopKMass = "tail_bucket",
    temperature: float = 1.0,
) -> torch.Tensor:
    """Mean divergence between teacher and student over each position's support, a scalar.

    student_logits: (N, V) at the sampled positions. support_ids: (N, k) int64 ids in [0, V).
    teacher_logprobs: (N, k) the teacher's logprobs of those ids (``-inf``: absent, e.g. a
    candidate the student vocabulary lacks; a row with none present carries no teacher signal
    and is left out). ``kind`` reverse_kl is KL(student || teacher) (MiniLLM's single-step term),
    jsd the generalized JSD with ``beta`` (GKD; 0.5 symmetric).
    """
    return topk_distillation(
        student_logits, support_ids, teacher_logprobs, kind=kind, mass=mass, beta=beta, temperature=temperature
    )


def sequence_reverse_kl(
    student_token_logprobs: torch.Tensor, teacher_token_logprobs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Monte Carlo estimate of KL(student || teacher) per sampled sequence, (B,).

    For y sampled from the student q, ``sum_t log q(y_t | y<t) - log p(y_t | y<t)`` is an unbiased
    estimate of the sequence-level reverse KL that MiniLLM minimizes. student_token_logprobs,
    teacher_token_logprobs: (B, T) logprobs of the sampled tokens; mask: (B, T) bool, True where
    the token counts (padding and tokens without a teacher score are False).
    """
    diff = (student_token_logprobs - teacher_token_logprobs).masked_fill(~mask, 0.0)
    return diff.sum(-1)

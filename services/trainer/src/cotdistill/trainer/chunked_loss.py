"""LM head + objective a chunk of positions at a time: never a full (N x V) fp32 tensor.

With a 49k-262k vocabulary the (N, V) logits of a batch, their fp32 log-softmax and the
gradient of each are the largest tensors of a training step (8 x 192 supervised tokens x 152k
x 4 bytes = 0.9 GB apiece). :func:`chunked_head_objective` projects ``chunk_rows`` hidden states
at a time, scores them (:func:`cotdistill.trainer.objectives.objective_sums`) and computes that
chunk's gradients for the hidden states and the head weight right away, inside the forward pass
(as Liger's fused linear cross-entropy does); the backward pass only scales the stored gradients
by the incoming one. Peak memory is one chunk's logits, their log-softmax and gradient, plus
``grad_hidden`` (N, H) and ``grad_weight`` (V, H) — the latter the size of the weight's own
gradient, which a full fine-tune keeps anyway. The arithmetic is the same as the unchunked
objective, so values agree to rounding (tested).

Shapes: hidden (N, H) at the supervised positions; weight (V, H) (tied or not); labels (N,);
teacher ids/logprobs (N, k) or None.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

from cotdistill.trainer.objectives import ObjectiveConfig, ObjectiveCounts, combine, objective_sums

CPU_CHUNK_BYTES = 64 << 20
"""Budget for one chunk's fp32 logits on a CPU (when the chunk size is left to :func:`auto_chunk_rows`)."""
GPU_CHUNK_BYTES = 512 << 20
"""On a GPU: larger chunks, because every chunk costs a few kernel launches and a Python round."""


def auto_chunk_rows(vocab_size: int, device: torch.device | str | None = None) -> int:
    """Positions per chunk so that one chunk's fp32 logits stay within the device's budget.

    CPU, 64 MiB: 341 rows at V=49,152, 110 at V=151,936; each chunk is still a large matmul
    (rows x H x V), so the loop costs nothing measurable against one big projection. GPU, 512 MiB:
    883 rows at V=151,936.
    """
    kind = torch.device(device).type if device is not None else "cpu"
    budget = CPU_CHUNK_BYTES if kind == "cpu" else GPU_CHUNK_BYTES
    return max(16, budget // (4 * max(vocab_size, 1)))


def chunked_head_objective(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    teacher_ids: torch.Tensor | None,
    teacher_logprobs: torch.Tensor | None,
    objective: ObjectiveConfig,
    *,
    chunk_rows: int,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``distillation_objective(hidden @ weight.T + bias, ...)`` computed ``chunk_rows`` rows at a time.

    compute_dtype: dtype of the projection (bf16 for mixed precision; None = the weight's); the
    log-softmax and the loss always run in fp32 or better.
    Returns ``(loss, parts)`` like :func:`cotdistill.trainer.objectives.distillation_objective`.
    """
    if objective.kd_weight > 0 and (teacher_ids is None or teacher_logprobs is None):
        raise ValueError("kd_weight > 0 needs teacher_ids and teacher_logprobs")
    if objective.kd_weight <= 0:
        teacher_ids = teacher_logprobs = None
    counts = ObjectiveCounts.of(labels, teacher_logprobs)
    out = _ChunkedHead.apply(
        hidden,
        weight,
        bias,
        labels,
        teacher_ids,
        teacher_logprobs,
        objective,
        counts,
        max(1, int(chunk_rows)),
        compute_dtype,
    )
    loss = out[0]
    parts = {"sft": out[1].detach()}
    if teacher_logprobs is not None:
        parts["kd"] = out[2].detach()
    return loss, parts


class _ChunkedHead(torch.autograd.Function):
    """Forward computes the loss and (when needed) its gradients; backward scales them.

    Output: a (3,) tensor ``[loss, sft, kd]`` (only ``loss`` carries a gradient).
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
        teacher_ids: torch.Tensor | None,
        teacher_logprobs: torch.Tensor | None,
        objective: ObjectiveConfig,
        counts: ObjectiveCounts,
        chunk_rows: int,
        compute_dtype: torch.dtype | None,
    ) -> torch.Tensor:
        needs = ctx.needs_input_grad
        want_h, want_w = bool(needs[0]), bool(needs[1])
        want_b = bias is not None and bool(needs[2])
        dtype = compute_dtype or weight.dtype
        # The projection weight cast once (a bf16 copy for mixed precision), not once per chunk.
        w = weight.detach().to(dtype).requires_grad_(want_w)
        b = bias.detach().to(dtype).requires_grad_(want_b) if bias is not None else None
        grad_h = torch.zeros_like(hidden) if want_h else None
        # Gradients and the result in fp32, or fp64 for fp64 inputs (tests compare exactly).
        acc = torch.promote_types(torch.float32, weight.dtype)
        grad_w = torch.zeros_like(weight, dtype=acc) if want_w else None
        grad_b = torch.zeros_like(bias, dtype=acc) if want_b and bias is not None else None
        nll_total = torch.zeros((), dtype=torch.float64)
        kd_total = torch.zeros((), dtype=torch.float64)
        n = hidden.shape[0]
        # Autocast would re-cast the weight for every chunk and run the loss in bf16: do it by hand.
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, chunk_rows):
                end = min(n, start + chunk_rows)
                h = hidden[start:end].detach().to(dtype).requires_grad_(want_h)
                with torch.enable_grad():
                    logits = functional.linear(h, w, b)
                    ids = teacher_ids[start:end] if teacher_ids is not None else None
                    lps = teacher_logprobs[start:end] if teacher_logprobs is not None else None
                    nll_sum, kd_sum = objective_sums(logits, labels[start:end], ids, lps, objective)
                    chunk_loss, _ = combine(nll_sum, kd_sum, counts, objective)
                    targets = [t for t, want in ((h, want_h), (w, want_w), (b, want_b)) if want and t is not None]
                    if targets and chunk_loss.requires_grad:
                        grads = iter(torch.autograd.grad(chunk_loss, targets))
                        if grad_h is not None:
                            grad_h[start:end] = next(grads).to(grad_h.dtype)
                        if grad_w is not None:
                            grad_w += next(grads).to(acc)
                        if grad_b is not None:
                            grad_b += next(grads).to(acc)
                nll_total += nll_sum.detach().double()
                if kd_sum is not None:
                    kd_total += kd_sum.detach().double()
        loss, parts = combine(nll_total, kd_total if teacher_logprobs is not None else None, counts, objective)
        ctx.save_for_backward(
            grad_h if grad_h is not None else torch.empty(0),
            grad_w if grad_w is not None else torch.empty(0),
            grad_b if grad_b is not None else torch.empty(0),
        )
        ctx.has = (grad_h is not None, grad_w is not None, grad_b is not None)
        ctx.weight_dtype = weight.dtype
        kd_part = parts.get("kd", torch.zeros((), dtype=torch.float64))
        return torch.stack([loss.detach(), parts["sft"], kd_part]).to(torch.promote_types(acc, hidden.dtype))

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        has_h, has_w, has_b = ctx.has
        scale = grad_out[0]
        return (
            grad_h * scale.to(grad_h.dtype) if has_h else None,
            (grad_w * scale).to(ctx.weight_dtype) if has_w else None,
            (grad_b * scale).to(ctx.weight_dtype) if has_b else None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )

"""One decoding step, shared by every scheduler: left padding, temperature, top-p, the draw.

The teacher's static batches, the server's continuous batching and the evaluator's checkpoint
backend call these, so a seeded row draws the same token from the same logits wherever it runs.
torch is imported inside the functions: ``cotdistill.common`` is installed without it by the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def left_pad(seqs: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts of different lengths as one batch that ends where generation starts.

    Returns ``input_ids`` [B, W] (``pad`` on the left), ``attention_mask`` [B, W] (0 on padding)
    and ``position_ids`` [B, W] (0 at each row's first real token, 0 on padding), W the longest.
    """
    import torch

    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if len(seq):
            ids[row, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def right_pad(seqs: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences as one batch starting at column 0 (an encoder's input, teacher forcing):
    ``input_ids`` [B, W] with ``pad`` on the right and ``attention_mask`` [B, W]."""
    import torch

    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if len(seq):
            ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, : len(seq)] = 1
    return ids, mask


def seeded_generator(seed: int, device: Any = "cpu") -> torch.Generator:
    """A generator of its own for one seeded row: its draws do not depend on batch company."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def top_p_filter(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero each row's tail outside its nucleus of mass ``top_p[row]`` and renormalize.

    probs: [B, V]; top_p: [B] in (0, 1]. A token stays when the mass of the tokens before it (in
    descending order) is below top_p, so the top token always stays: vLLM's and transformers' rule.
    """
    import torch

    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop_sorted = before >= top_p[:, None]
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    filtered = probs.masked_fill(drop, 0.0)
    return filtered / filtered.sum(dim=-1, keepdim=True)


def draw(probs: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """One token per row from probs [B, V] (rows sum to ~1): the row's CDF inverted at a uniform
    draw, from the row's own generator when it has one, else from torch's global one.

    One cumsum over the batch and one uniform per row, not a ``multinomial`` call per row (those
    took ~7 ms a row on a 152k vocabulary on CPU). ``right=True``: the first token whose
    cumulative mass exceeds the draw, never a zero-mass one.
    """
    import torch

    uniform = torch.rand(len(probs), device=probs.device)  # unseeded rows keep these
    for row, gen in enumerate(generators):
        if gen is not None:
            uniform[row] = torch.rand((), generator=gen, device=probs.device)
    cdf = probs.cumsum(dim=-1)
    drawn = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True).squeeze(1)
    return drawn.clamp(max=cdf.shape[1] - 1)


def sample_next(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    generators: Sequence[torch.Generator | None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next token of every row, each with its own sampling parameters.

    logits: [B, V] float32; temperature: [B] (<= 0: greedy, the argmax); top_p: [B] in (0, 1];
    generators: one per row (None: the global RNG). Returns ``(tokens [B], scaled [B, V])``, the
    logits after temperature (greedy rows unscaled) for callers that report processed logprobs.
    Greedy rows draw nothing, so a seeded row's stream only advances on its sampled steps.
    """
    import torch

    greedy = temperature <= 0
    if bool(greedy.all()):
        return logits.argmax(dim=-1), logits
    scaled = logits / torch.where(greedy, 1.0, temperature)[:, None]
    probs = torch.softmax(scaled, dim=-1)
    if bool((top_p < 1).any()):
        probs = top_p_filter(probs, top_p)
    tokens = logits.argmax(dim=-1)
    rows = (~greedy).nonzero().squeeze(1)
    if len(rows) == len(logits):
        tokens = draw(probs, generators)
    else:
        picked = rows.tolist()
        tokens[rows] = draw(probs[rows], [generators[r] for r in picked])
    return tokens, scaled

"""Normalize per-position logprob candidates from vLLM or an OpenAI server to exactly k per token.

vLLM returns, for each generated position, the sampled token first (with its rank) followed by
the top-k candidates, so a position holds k+1 entries, or k when the container is a dict and the
sampled token is one of the top k (the duplicate collapses). OpenAI-style responses hold up to k
candidates per position in no promised order. The wire format wants exactly k candidates per
token, sorted by logprob, padded with -1/-inf only where fewer exist. The common vLLM case
(every position k+1 entries) is handled with whole-array numpy operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cotdistill.teacher.engine import PAD_ID, PAD_LOGPROB


@dataclass
class CandidateColumns:
    """Per-position candidates as flat columns: position i owns entries [offsets[i], offsets[i+1])."""

    counts: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    def extend_flat(self, starts: Sequence[int], ends: Sequence[int], ids: Sequence[int], lps: Sequence[float]) -> None:
        """Append a vLLM ``FlatLogprobs`` (or its delta)."""
        self.counts.extend(e - s for s, e in zip(starts, ends, strict=True))
        if starts:
            lo, hi = starts[0], ends[-1]
            self.ids.extend(ids[lo:hi])
            self.logprobs.extend(lps[lo:hi])

    def extend_dicts(self, positions: Sequence[dict[int, float] | None]) -> None:
        """Append positions given as ``{token id: logprob}`` in the source's order."""
        for pos in positions:
            pos = pos or {}
            self.counts.append(len(pos))
            self.ids.extend(pos.keys())
            self.logprobs.extend(pos.values())


def normalize(
    columns: CandidateColumns, token_ids: Sequence[int], k: int, *, sampled_first: bool
) -> tuple[list[float], list[int], list[float]]:
    """Sampled-token logprobs and exactly-k top candidates per position.

    Args:
        columns: candidates of T positions (T = len(token_ids)).
        token_ids: the token at each position (sampled, or the teacher-forced completion token).
        k: candidates wanted per position.
        sampled_first: the first entry of each position is the token itself (vLLM), not a rank.

    Returns:
        ``(token_logprobs [T], top_ids [T*k], top_logprobs [T*k])``, rows sorted by logprob, highest
        first. A position whose token is not among its entries gets logprob -inf.
    """
    t = len(token_ids)
    if len(columns.counts) != t:
        raise ValueError(f"{len(columns.counts)} positions of logprobs for {t} tokens")
    counts = np.asarray(columns.counts, dtype=np.int64)
    ids = np.asarray(columns.ids, dtype=np.int64)
    lps = np.asarray(columns.logprobs, dtype=np.float32)
    tokens = np.asarray(token_ids, dtype=np.int64)
    if t and sampled_first and (counts == k + 1).all():
        ids2, lps2 = ids.reshape(t, k + 1), lps.reshape(t, k + 1)
        token_lp = np.where(ids2[:, 0] == tokens, lps2[:, 0], np.float32(PAD_LOGPROB))
        top_ids, top_lps = ids2[:, 1:], lps2[:, 1:]
        order = np.argsort(-top_lps, axis=1, kind="stable")
        top_ids = np.take_along_axis(top_ids, order, axis=1)
        top_lps = np.take_along_axis(top_lps, order, axis=1)
        return token_lp.tolist(), top_ids.reshape(-1).tolist(), top_lps.reshape(-1).tolist()
    return _normalize_slow(counts, ids, lps, tokens, k)


def _normalize_slow(
    counts: np.ndarray, ids: np.ndarray, lps: np.ndarray, tokens: np.ndarray, k: int
) -> tuple[list[float], list[int], list[float]]:
    """Any layout: dedupe each position's entries, sort, keep k, pad (one pass per position)."""
    t = len(tokens)
    token_lp = np.full(t, PAD_LOGPROB, dtype=np.float32)
    top_ids = np.full((t, k), PAD_ID, dtype=np.int64)
    top_lps = np.full((t, k), PAD_LOGPROB, dtype=np.float32)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for i in range(t):
        entries: dict[int, float] = {}
        for j in range(offsets[i], offsets[i + 1]):
            entries.setdefault(int(ids[j]), float(lps[j]))
        if int(tokens[i]) in entries:
            token_lp[i] = entries[int(tokens[i])]
        best = sorted(entries.items(), key=lambda kv: -kv[1])[:k]
        for c, (tid, lp) in enumerate(best):
            top_ids[i, c], top_lps[i, c] = tid, lp
    return token_lp.tolist(), top_ids.reshape(-1).tolist(), top_lps.reshape(-1).tolist()

"""Normalizing engine logprob candidates to exactly k per token, sorted, padded."""

from __future__ import annotations

import math

from cotdistill.teacher.engines.topk import CandidateColumns, normalize


def test_vllm_layout_sampled_first_then_top_k() -> None:
    # Two positions, k=2: [sampled, rank1, rank2]; the second sampled token is outside the top 2.
    cols = CandidateColumns()
    cols.extend_flat([0, 3], [3, 6], [7, 7, 9, 4, 8, 5], [-0.1, -0.1, -2.0, -3.0, -0.5, -1.0])
    token_lp, ids, lps = normalize(cols, [7, 4], 2, sampled_first=True)
    assert [round(x, 3) for x in token_lp] == [-0.1, -3.0]
    assert ids == [7, 9, 8, 5]
    assert [round(x, 3) for x in lps] == [-0.1, -2.0, -0.5, -1.0]


def test_deltas_append_like_one_container() -> None:
    cols = CandidateColumns()
    cols.extend_flat([0], [3], [1, 1, 2], [-0.2, -0.2, -1.7])
    cols.extend_flat([0], [3], [3, 2, 3], [-0.9, -0.6, -0.9])
    _, ids, _ = normalize(cols, [1, 3], 2, sampled_first=True)
    assert ids == [1, 2, 2, 3]  # row 2 re-sorted: -0.6 before -0.9


def test_dict_layout_dedupes_sorts_and_pads_short_rows() -> None:
    cols = CandidateColumns()
    cols.extend_dicts([{5: -1.5, 6: -0.5}, {8: -0.1}, None])
    token_lp, ids, lps = normalize(cols, [5, 9, 1], 3, sampled_first=False)
    assert token_lp[0] == -1.5 and math.isinf(token_lp[1]) and math.isinf(token_lp[2])
    assert ids == [6, 5, -1, 8, -1, -1, -1, -1, -1]
    assert lps[0] == -0.5 and all(math.isinf(x) and x < 0 for x in lps[2:3] + lps[4:])


def test_k_zero_keeps_only_sampled_logprobs() -> None:
    cols = CandidateColumns()
    cols.extend_flat([0, 1], [1, 2], [3, 4], [-0.3, -0.4])
    token_lp, ids, lps = normalize(cols, [3, 4], 0, sampled_first=True)
    assert [round(x, 3) for x in token_lp] == [-0.3, -0.4] and ids == [] and lps == []

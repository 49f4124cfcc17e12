"""Left padding and the one sampling step every scheduler calls."""

from __future__ import annotations

import torch

from cotdistill.common.lm.sampling import draw, left_pad, right_pad, sample_next, seeded_generator, top_p_filter


def test_left_padding_ends_every_row_where_generation_starts() -> None:
    ids, mask, positions = left_pad([[5, 6, 7], [8], [9, 10]], pad=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 10]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 1]]
    assert ids.dtype == mask.dtype == torch.long


def test_right_padding_starts_every_row_at_column_zero() -> None:
    ids, mask = right_pad([[5, 6, 7], [8]], pad=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_draws_follow_the_distribution_and_never_a_zero_mass_token() -> None:
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2], [0.0, 0.0, 1.0, 0.0]]).repeat(2000, 1)
    generators = [seeded_generator(i) if i % 2 == 0 else None for i in range(len(probs))]  # half seeded
    tokens = draw(probs, generators)
    first = torch.bincount(tokens[0::2], minlength=4).float() / 2000
    torch.testing.assert_close(first, probs[0], atol=0.04, rtol=0)
    assert (tokens[0::2] != 1).all() and (tokens[1::2] == 2).all()
    again = draw(probs, [seeded_generator(i) if i % 2 == 0 else None for i in range(len(probs))])
    assert torch.equal(tokens[0::2], again[0::2])  # seeded rows: the same draws


def test_top_p_keeps_the_smallest_nucleus_per_row() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]])
    out = top_p_filter(probs, torch.tensor([0.7, 1.0]))
    torch.testing.assert_close(out[0], torch.tensor([0.625, 0.375, 0.0, 0.0]))
    torch.testing.assert_close(out[1], probs[1])
    assert top_p_filter(probs, torch.tensor([0.01, 0.01])).count_nonzero(dim=-1).tolist() == [1, 1]
    # A token whose preceding mass is exactly top_p is dropped (vLLM's and transformers' rule).
    assert top_p_filter(torch.tensor([[0.5, 0.3, 0.2]]), torch.tensor([0.5])).count_nonzero().item() == 1


def test_the_sampling_step_is_greedy_at_temperature_zero_and_seeded_rows_ignore_their_company() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    temps = torch.tensor([0.0, 1.0, 0.7, 1.0])
    top_ps = torch.tensor([1.0, 1.0, 0.9, 1.0])
    tokens, scaled = sample_next(logits, temps, top_ps, [None, seeded_generator(1), seeded_generator(2), None])
    assert tokens[0] == logits[0].argmax()
    torch.testing.assert_close(scaled[2], logits[2] / 0.7)
    torch.testing.assert_close(scaled[0], logits[0])
    # Row 1 alone, with the same seed: the same token whatever else shares the batch.
    alone, _ = sample_next(logits[1:2], temps[1:2], top_ps[1:2], [seeded_generator(1)])
    assert alone.item() == tokens[1].item()
    # The seeded stream decides: over 20 seeds the draws are not all one token.
    draws = {sample_next(logits[1:2], temps[1:2], top_ps[1:2], [seeded_generator(s)])[0].item() for s in range(20)}
    assert len(draws) > 1
    greedy, same = sample_next(logits, torch.zeros(4), top_ps, [None] * 4)
    assert torch.equal(greedy, logits.argmax(-1)) and same is logits

"""Wilson intervals and majority voting."""

from __future__ import annotations

import math

import pytest

from cotdistill.evaluator.stats import majority_vote, wilson_interval


def test_wilson_matches_the_closed_form_at_a_known_point() -> None:
    # 8/10 at 95%: the textbook Wilson interval is [0.4902, 0.9433].
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


@pytest.mark.parametrize(("correct", "total"), [(0, 5), (5, 5), (1, 1), (0, 1), (37, 200), (199, 200)])
def test_wilson_contains_the_estimate_and_stays_in_unit_interval(correct: int, total: int) -> None:
    low, high = wilson_interval(correct, total)
    p = correct / total
    assert 0.0 <= low <= p <= high <= 1.0
    assert high - low > 0  # never degenerate, even at 0% or 100%


def test_wilson_narrows_with_more_data() -> None:
    small = wilson_interval(5, 10)
    large = wilson_interval(500, 1000)
    assert (large[1] - large[0]) < (small[1] - small[0]) / 5
    assert math.isclose((large[0] + large[1]) / 2, 0.5, abs_tol=1e-9)


def test_wilson_without_data_knows_nothing_and_rejects_bad_counts() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="correct <= total"):
        wilson_interval(3, 2)


def test_majority_vote_counts_ignores_missing_and_breaks_ties_by_first_seen() -> None:
    assert majority_vote(["4", "5", "4"]) == "4"
    assert majority_vote([None, None, "7"]) == "7"
    assert majority_vote(["b", "a", "a", "b"]) == "b"
    assert majority_vote([None, ""]) is None

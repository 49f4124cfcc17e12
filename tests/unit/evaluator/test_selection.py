"""Model selection on a constructed table: each signal picks the checkpoint it should."""

from __future__ import annotations

import pytest

from cotdistill.evaluator.selection import Row, choose


def table() -> list[Row]:
    # Fu et al.'s situation: ID accuracy keeps rising while OOD peaks early and then falls.
    return [
        Row("step-100", 100, in_distribution=0.30, out_of_distribution=0.40, validation_loss=1.9),
        Row("step-200", 200, in_distribution=0.45, out_of_distribution=0.47, validation_loss=1.2),
        Row("step-300", 300, in_distribution=0.55, out_of_distribution=0.35, validation_loss=1.0),
        Row("step-400", 400, in_distribution=0.60, out_of_distribution=0.25, validation_loss=1.1),
    ]


def test_in_distribution_picks_the_latest_best_id() -> None:
    rows = table()
    assert rows[choose(rows, "in_distribution")].label == "step-400"
    assert [r.signal_value for r in rows] == [0.30, 0.45, 0.55, 0.60]


def test_out_of_distribution_picks_a_different_checkpoint() -> None:
    rows = table()
    assert rows[choose(rows, "out_of_distribution")].label == "step-200"


def test_weighted_mix_interpolates_between_the_two() -> None:
    rows = table()
    assert rows[choose(rows, "weighted", id_weight=1.0)].label == "step-400"
    assert rows[choose(rows, "weighted", id_weight=0.0)].label == "step-200"
    chosen = choose(rows, "weighted", id_weight=0.5)
    assert rows[chosen].label == "step-200"  # 0.46 beats 0.45 (step-300) and 0.425 (step-400)
    assert rows[2].signal_value == pytest.approx(0.45)


def test_validation_loss_is_minimized() -> None:
    rows = table()
    assert rows[choose(rows, "validation_loss")].label == "step-300"


def test_ties_go_to_the_earlier_checkpoint() -> None:
    rows = [Row("b", 200, in_distribution=0.5), Row("a", 100, in_distribution=0.5)]
    assert rows[choose(rows, "in_distribution")].label == "a"


def test_a_flat_signal_is_broken_by_the_other_group() -> None:
    # OOD is 0 everywhere (a tiny student on longer chains): the best ID checkpoint, not the first.
    rows = [
        Row("step-100", 100, in_distribution=0.10, out_of_distribution=0.0),
        Row("step-200", 200, in_distribution=0.90, out_of_distribution=0.0),
        Row("step-300", 300, in_distribution=0.85, out_of_distribution=0.0),
    ]
    assert rows[choose(rows, "out_of_distribution")].label == "step-200"
    rows = [
        Row("a", 100, in_distribution=0.9, out_of_distribution=0.1),
        Row("b", 200, in_distribution=0.9, out_of_distribution=0.3),
    ]
    assert rows[choose(rows, "in_distribution")].label == "b"


def test_missing_figures_are_named() -> None:
    with pytest.raises(ValueError, match="no validation_loss"):
        choose([Row("x", 1, in_distribution=0.1)], "validation_loss")
    with pytest.raises(ValueError, match="out-of-distribution"):
        choose([Row("x", 1, in_distribution=0.1)], "weighted")
    with pytest.raises(ValueError, match="no candidates"):
        choose([], "in_distribution")

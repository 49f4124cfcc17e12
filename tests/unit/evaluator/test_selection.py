"""Model selection on a constructed table: each signal picks the checkpoint it should."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cotdistill.common.errors import InvalidArgument
from cotdistill.evaluator.selection import (
    EvaluateModel,
    Row,
    SelectionCandidate,
    SelectionPlan,
    Signal,
    choose,
    select,
)


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


# ---- the Select workflow, with the evaluation narrowed to a table of planted accuracies --------


def _plan(tmp_path: Path, signal: Signal, accuracies: dict[str, tuple[float, float | None]]) -> SelectionPlan:
    from cotdistill.common.artifacts import ArtifactStore
    from cotdistill.evaluator.backends import GenerationParams
    from cotdistill.evaluator.evaluation import DatasetTask
    from cotdistill.evaluator.suite import LoadedDataset
    from cotdistill.v1 import common_pb2

    dev = DatasetTask(LoadedDataset("dev", "dev", [], "fp"), "in_distribution")
    candidates = [
        SelectionCandidate(label, 0, common_pb2.ModelRef(checkpoint_path=f"/ck/{label}"), f"candidates[{i}].model")
        for i, label in enumerate(accuracies)
    ]
    return SelectionPlan(candidates, signal, 0.5, "ft_cot", [dev], GenerationParams(), ArtifactStore(str(tmp_path)))


def _planted(accuracies: dict[str, tuple[float, float | None]], seen: list[tuple[str, str, str]]) -> EvaluateModel:
    from cotdistill.evaluator.evaluation import EvaluationOutcome, EvaluationRequest, ProgressEvent
    from cotdistill.v1 import common_pb2

    async def evaluate(
        request: EvaluationRequest, model: common_pb2.ModelRef, field: str
    ) -> AsyncIterator[ProgressEvent | EvaluationOutcome]:
        seen.append((request.label, model.checkpoint_path, field))
        id_acc, ood_acc = accuracies[request.label]
        groups = {"in_distribution": id_acc} | ({} if ood_acc is None else {"out_of_distribution": ood_acc})
        yield ProgressEvent(0, 1, "evaluating")
        step = 100 * (list(accuracies).index(request.label) + 1)
        yield EvaluationOutcome(request.label, "hash", "m", "fake", step, 1, {}, {}, [], groups)

    return evaluate


async def test_select_evaluates_every_candidate_and_writes_the_table(tmp_path: Path) -> None:
    accuracies: dict[str, tuple[float, float | None]] = {"early": (0.4, 0.5), "late": (0.7, 0.2)}
    seen: list[tuple[str, str, str]] = []
    plan = _plan(tmp_path, "out_of_distribution", accuracies)
    result = await select(plan, _planted(accuracies, seen))
    assert seen == [("early", "/ck/early", "candidates[0].model"), ("late", "/ck/late", "candidates[1].model")]
    assert (result.chosen, [r.step for r in result.rows]) == (0, [100, 200])  # steps from the outcomes
    assert result.table_path == plan.output.path("eval", "selection.json")
    table = plan.output.read_json("eval", "selection.json")
    assert table["chosen"] == {"label": "early", "step": 100, "model": {"checkpoint_path": "/ck/early"}}
    assert [row["signal_value"] for row in table["table"]] == [0.5, 0.2]


async def test_select_names_datasets_when_the_signal_has_no_figure(tmp_path: Path) -> None:
    accuracies: dict[str, tuple[float, float | None]] = {"only": (0.4, None)}
    plan = _plan(tmp_path, "weighted", accuracies)
    with pytest.raises(InvalidArgument, match="^datasets: .*out-of-distribution"):
        await select(plan, _planted(accuracies, []))
    assert not plan.output.exists("eval", "selection.json")

"""Report rendering from eval/*.json: files exist, plots are real PNGs, Markdown holds the tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cotdistill.pipeline.reports import load_results, render_report, render_run_report
from cotdistill.pipeline.run_config import RunConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def entry(dataset: str, group: str, correct: int, total: int = 50) -> dict[str, Any]:
    from cotdistill.evaluator.stats import wilson_interval

    low, high = wilson_interval(correct, total)
    return {
        "dataset": dataset,
        "split": "test",
        "format": "ft_cot",
        "group": group,
        "correct": correct,
        "total": total,
        "accuracy": correct / total,
        "ci_low": low,
        "ci_high": high,
        "predictions_path": f"/x/{dataset}.jsonl",
        "cached": False,
    }


def result(label: str, step: int, id_c: int, ood_c: int, **extra: Any) -> dict[str, Any]:
    results = [entry("arith", "in_distribution", id_c), entry("arith4", "out_of_distribution", ood_c)]
    return {
        "schema": "cotdistill.eval/v1",
        "label": label,
        "model_hash": "ab" * 32,
        "model": label,
        "backend": extra.pop("backend", "checkpoint"),
        "step": step,
        "num_parameters": extra.pop("num_parameters", 250_000),
        "tags": extra.pop("tags", {"role": "student", "num_samples": "4"}),
        "generation": {"max_tokens": 64, "temperature": 0.0},
        "results": results,
        "group_accuracy": {"in_distribution": id_c / 50, "out_of_distribution": ood_c / 50},
    }


def write_run(run: Path, results: list[dict[str, Any]], selection: dict[str, Any] | None = None) -> None:
    (run / "eval").mkdir(parents=True)
    for i, r in enumerate(results):
        (run / "eval" / f"r{i}.json").write_text(json.dumps(r))
    if selection:
        (run / "eval" / "selection.json").write_text(json.dumps(selection))
    (run / "eval" / "unrelated.json").write_text(json.dumps({"not": "a result"}))


def test_full_report_draws_every_plot(tmp_path: Path) -> None:
    results = [
        result("student step-100", 100, 10, 12),
        result("student step-200", 200, 25, 20),
        result("student step-300", 300, 30, 15),
        result("teacher", 0, 45, 30, backend="teacher", tags={"role": "teacher"}, num_parameters=0),
        # D=1 and a larger student: the D and scaling curves.
        result("student D=1", 300, 20, 10, tags={"role": "student", "num_samples": "1"}),
        result("student big", 300, 40, 25, num_parameters=2_000_000, tags={"role": "student", "num_samples": "4"}),
    ]
    selection = {
        "signal": "out_of_distribution",
        "id_weight": 0.5,
        "chosen_index": 1,
        "chosen": {"label": "student step-200", "step": 200},
        "table": [
            {
                "label": "student step-100",
                "step": 100,
                "signal_value": 0.24,
                "in_distribution_accuracy": 0.2,
                "out_of_distribution_accuracy": 0.24,
                "validation_loss": None,
            },
            {
                "label": "student step-200",
                "step": 200,
                "signal_value": 0.4,
                "in_distribution_accuracy": 0.5,
                "out_of_distribution_accuracy": 0.4,
                "validation_loss": 1.25,
            },
        ],
    }
    write_run(tmp_path / "run", results, selection)
    report = render_run_report(tmp_path / "run")
    assert set(report.plots) == {"accuracy_vs_step", "teacher_vs_student", "accuracy_vs_d", "scaling"}
    for path in report.plots.values():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, path
        assert len(data) < 200_000
    md = report.markdown.read_text()
    assert "chosen: **student step-200** (step 200)" in md
    assert "| student step-200 | 200 | arith | test | ft_cot | ID | 50.0 |" in md
    assert "![accuracy_vs_step](accuracy_vs_step.png)" in md
    summary = json.loads(report.json.read_text())
    assert summary["teacher"] == "teacher" and summary["best_student"] == "student step-200"
    assert len(summary["results"]) == 6  # the unrelated JSON file is not a result


def test_plots_without_their_data_are_skipped_with_a_reason(tmp_path: Path) -> None:
    write_run(tmp_path / "run", [result("only", 0, 5, 5)])
    (tmp_path / "run" / "report").mkdir()
    (tmp_path / "run" / "report" / "scaling.png").write_bytes(b"stale")
    report = render_run_report(tmp_path / "run")
    assert report.plots == {}
    assert "two or more training steps" in report.skipped["accuracy_vs_step"]
    assert not (tmp_path / "run" / "report" / "scaling.png").exists()
    assert "not drawn (needs a teacher result" in report.markdown.read_text()


def test_a_run_without_results_and_a_broken_file_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no evaluation results"):
        render_run_report(tmp_path)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "bad.json").write_text("{\n  oops")
    with pytest.raises(ValueError, match=r"bad.json:2"):
        load_results(tmp_path)


def test_render_report_accepts_results_in_memory(tmp_path: Path) -> None:
    report = render_report([result("a", 10, 1, 2), result("b", 20, 3, 4)], tmp_path / "out")
    assert report.markdown.exists() and "accuracy_vs_step" in report.plots


def test_evaluation_section_keeps_old_recipes_valid() -> None:
    config = RunConfig.model_validate({"name": "x", "evaluation": {"datasets": [{"name": "gsm8k"}]}})
    assert config.evaluation.temperature == 0.0 and config.evaluation.num_samples == 1
    with pytest.raises(ValueError, match="id_weight"):
        RunConfig.model_validate({"name": "x", "evaluation": {"id_weight": 2}})


def test_accuracy_rows_carry_question_counts_and_the_evaluators_intervals(tmp_path: Path) -> None:
    """The demos' tables read every result through one reader: n and the 95% interval come from the
    file (a reader that looked for another key once reported n = 0 and 0-100% intervals)."""
    from cotdistill.evaluator.stats import wilson_interval
    from cotdistill.pipeline.reports import accuracy_rows, wilson

    later = result("student step-000020", 20, 30, 10)
    teacher = result("teacher", 0, 40, 35, backend="teacher", tags={"role": "teacher"})
    old = result("student step-000010", 10, 20, 5)
    for e in old["results"]:  # a file from before the evaluator wrote intervals
        del e["ci_low"], e["ci_high"]
    write_run(tmp_path, [later, teacher, old])
    rows = accuracy_rows(tmp_path)
    assert [(r["label"], r["role"], r["step"]) for r in rows] == [
        ("teacher", "teacher", 0),
        ("student step-000010", "student", 10),
        ("student step-000020", "student", 20),
    ]
    cell = rows[2]["acc"]["arith"]
    assert (cell["accuracy"], cell["n"]) == (0.6, 50)
    assert cell["ci95"] == pytest.approx(wilson_interval(30, 50))
    assert rows[1]["acc"]["arith4"]["ci95"] == pytest.approx(wilson(0.1, 50))
    assert rows[1]["acc"]["arith4"]["ci95"] == pytest.approx(wilson_interval(5, 50), abs=1e-4)  # z 1.96 vs 1.95996

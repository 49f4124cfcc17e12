"""The teacher-scoring comparison's report, re-rendered from result files (``--report-only``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cotdistill.pipeline.demo.teacher_scoring import parse_args, rerender


def _result(label: str, step: int, correct: dict[str, int], total: int = 40) -> dict[str, Any]:
    return {
        "schema": "cotdistill.eval/v1",
        "label": label,
        "step": step,
        "tags": {"role": "student"},
        "results": [
            {"dataset": d, "format": "ft_cot", "accuracy": c / total, "total": total, "correct": c}
            for d, c in correct.items()
        ],
    }


def _write(run: Path, *results: dict[str, Any]) -> None:
    (run / "eval").mkdir(parents=True)
    for i, r in enumerate(results):
        (run / "eval" / f"r{i}.json").write_text(json.dumps(r))


def test_report_only_reads_counts_and_separates_arms_only_beyond_the_intervals(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "report"
    _write(runs / "ts-untrained", _result("smollm2-135m-instruct", 0, {"gsm8k": 1, "multiarith": 0}))
    _write(runs / "ts-sft-samples", _result("step 30", 30, {"gsm8k": 2, "multiarith": 1}))
    _write(runs / "ts-kd-gold", _result("step 30", 30, {"gsm8k": 3, "multiarith": 30}))
    out.mkdir()
    previous = {
        "arms": {
            "sft-samples": {"title": "SFT on teacher samples", "accuracy": [], "steps": []},
            "kd-gold": {"title": "SFT + KD on gold rationales", "accuracy": [], "steps": []},
        },
        "phases": {"kd-gold: score+filter+train": 600.0},
        "seconds": 3600.0,
        "load_average": {"before": [0.5], "after": [1.5]},
        "machine": {"cpu": "x86_64", "cores": 2},
        "config": {"questions": 48, "num_samples": 2, "steps": 30, "batch_size": 8, "learning_rate": 1e-4,
                   "eval": {"gsm8k": 40, "multiarith": 40}},
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(previous))
    report = rerender(parse_args(["--report-only", "--report-dir", str(out), f"output_dir={runs}"])).read_text()
    assert "| untrained | 0 | 2.5 (0-13) | 0.0 (0-9) |" in report  # n = 40, not 0: real intervals
    assert "gsm8k, final checkpoints: SFT on teacher samples 5.0%, SFT + KD on gold rationales 7.5%; the " \
        "intervals overlap" in report  # fmt: skip
    assert "multiarith, final checkpoints" in report and "SFT + KD on gold rationales is ahead beyond" in report
    assert (out / "accuracy_vs_step.png").is_file()

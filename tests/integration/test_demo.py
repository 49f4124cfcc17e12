"""``make demo`` end to end at a reduced scale (``--quick``): every artifact exists, the HTTP answer parses.

Runs ``python -m cotdistill.pipeline.demo --quick`` as a user would: it builds (or reuses) a small
teacher, starts the four services on loopback, samples through gRPC, trains on Ray Train through
the trainer service, evaluates and selects through the evaluator, reloads the server with the
chosen checkpoint and asks /v1/reason one question.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def test_quick_demo_runs_the_whole_pipeline(repo_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cache = repo_root / ".scratch" / "cache" / "demo-quick"  # the quick teacher is reused across runs
    cmd = [
        sys.executable,
        "-m",
        "cotdistill.pipeline.demo",
        "--quick",
        "--work-dir",
        str(tmp_path / "work"),
        "--cache-dir",
        str(cache),
        f"output_dir={runs}",
    ]
    env = {**os.environ, "COLUMNS": "160", "TERM": "dumb"}
    done = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=280)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]

    run_dir = runs / "demo"
    # sample + filter: shards with top-k logprobs, filter statistics
    shards = list((run_dir / "samples").rglob("*.parquet"))
    assert shards, f"no sample shards under {run_dir / 'samples'}"
    assert list((run_dir / "train").rglob("*")), "the filter stage wrote nothing under train/"
    # train: the trainer run record with its checkpoints, each a loadable HF directory
    run = json.loads((run_dir / "training" / "run.json").read_text())
    assert run["state"] == "RUN_STATE_SUCCEEDED"
    assert run["spec"]["objective"]["kdWeight"] > 0, "the demo trains with distribution matching"
    checkpoints = [Path(c["path"]) for c in run["checkpoints"]]
    assert len(checkpoints) >= 2 and all((c / "model.safetensors").is_file() for c in checkpoints)
    # evaluate: the teacher and every checkpoint, in and out of distribution
    results = [json.loads(p.read_text()) for p in (run_dir / "eval").glob("*.json") if p.name != "selection.json"]
    roles = [r["tags"]["role"] for r in results]
    assert roles.count("teacher") == 1 and roles.count("student") == len(checkpoints)
    for result in results:
        assert set(result["group_accuracy"]) == {"in_distribution", "out_of_distribution"}
    # select + serve: the chosen checkpoint is one of the run's, the report has plots
    selection = json.loads((run_dir / "eval" / "selection.json").read_text())
    assert Path(selection["chosen"]["model"]["checkpoint_path"]) in checkpoints
    assert (run_dir / "report" / "report.md").is_file()
    assert (run_dir / "report" / "accuracy_vs_step.png").is_file()
    assert (run_dir / "report" / "demo_teacher_vs_student.png").is_file()
    # the HTTP answer was printed with its fields, and the curl line to try
    assert "POST /v1/reason" in out and "rationale:" in out and "answer:" in out
    assert re.search(r"curl -s http://127\.0\.0\.1:\d+/v1/reason", out)
    assert "demo wall time" in out

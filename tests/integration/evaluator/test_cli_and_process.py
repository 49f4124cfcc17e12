"""`cotdistill serve evaluator` as a real process, driven by `cotdistill eval` and `cotdistill report`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from cotdistill.common.errors import InvalidArgument, NotFound
from cotdistill.pipeline.cli import app
from tests.integration.conftest import ServiceProcess, grpc_serving, wait_until

CLI = str(Path(sys.executable).parent / "cotdistill")


def test_eval_select_and_report_through_a_real_service(
    run_service: Callable[..., ServiceProcess], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    service = run_service("evaluator", {"COTDISTILL_EVALUATOR_TORCH_THREADS": "1"})
    run = tmp_path / "runs" / "cli"
    for step in (10, 20):  # two "checkpoints" of a run (same weights: the second one hits the cache)
        shutil.copytree(tiny_models["student"], run / "checkpoints" / f"step-{step}")
    (run / "checkpoints" / "step-20" / "run_state.json").write_text(json.dumps({"validation_loss": 1.5}))
    config = tmp_path / "eval.yaml"
    config.write_text(
        f"""name: cli
output_dir: {tmp_path / "runs"}
sampling: {{num_samples: 4}}
evaluation:
  evaluator_address: {service.address}
  datasets:
    - {{name: synthetic_arithmetic, split: test, group: in_distribution, limit: 4}}
    - {{name: synthetic_arithmetic_4step, split: test, group: out_of_distribution, limit: 4}}
  formats: [answer_only]
  max_tokens: 4
  batch_size: 4
"""
    )
    wait_until(lambda: grpc_serving(service.address), 60, "evaluator SERVING", service)

    done = subprocess.run(
        [CLI, "eval", str(config), "--select", "evaluation.selection_signal=weighted"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr + service.log()
    assert "chosen:" in done.stderr and "report:" in done.stderr
    results = sorted((run / "eval").glob("student*.json"))
    assert len(results) == 2
    saved = [json.loads(p.read_text()) for p in results]
    assert {r["step"] for r in saved} == {10, 20} and saved[0]["tags"]["num_samples"] == "4"
    assert all(e["cached"] for e in saved[1]["results"])  # same weights, same content hash
    selection = json.loads((run / "eval" / "selection.json").read_text())
    assert selection["signal"] == "weighted" and selection["table"][1]["validation_loss"] == 1.5

    # The rest in-process (same typer app, the real service over gRPC): CLI start-up is slow here.
    cli = CliRunner()
    report = cli.invoke(app, ["report", str(run)])
    assert report.exit_code == 0, report.output
    assert str(run / "report" / "report.md") in report.stdout
    assert (run / "report" / "accuracy_vs_step.png").stat().st_size > 5_000

    missing = cli.invoke(app, ["report", str(tmp_path)])
    assert isinstance(missing.exception, NotFound) and "no evaluation results" in str(missing.exception)

    bad = cli.invoke(app, ["eval", str(config), "evaluation.formats=[nope]"])
    assert isinstance(bad.exception, InvalidArgument) and "formats[0]" in str(bad.exception)

    with urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=10) as reply:
        metrics = reply.read().decode()
    assert 'cotdistill_evaluator_examples_total{backend="checkpoint",cached="false"} 8.0' in metrics
    assert 'cotdistill_evaluator_evaluations_total{state="succeeded"}' in metrics
    assert "cotdistill_evaluator_examples_per_second" in metrics
    assert service.terminate() == 0, service.log()

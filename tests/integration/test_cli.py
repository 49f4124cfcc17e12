"""The cotdistill CLI as a user runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import free_port
from tests.integration.conftest import tool


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("cotdistill"), *args], capture_output=True, text=True, check=False, cwd=cwd)


def test_version_lists_every_distribution() -> None:
    result = cli("version")
    assert result.returncode == 0, result.stderr
    for dist in (
        "cotdistill-shared",
        "cotdistill-teacher",
        "cotdistill-trainer",
        "cotdistill-evaluator",
        "cotdistill-server",
    ):
        assert dist in result.stdout
    assert "not installed" not in result.stdout


def test_config_validate_ok_and_resolved(repo_root: Path) -> None:
    result = cli("config", "validate", str(repo_root / "configs" / "demo.yaml"), "sampling.num_samples=8", "--show")
    assert result.returncode == 0, result.stderr
    assert "num_samples: 8" in result.stdout
    assert "ok" in result.stderr


def test_config_validate_error_names_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsampling:\n  top_k_logprobs: 99\n")
    result = cli("config", "validate", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: sampling.top_k_logprobs" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr


def test_run_writes_resolved_config_and_reports_an_unreachable_teacher(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: trial\noutput_dir: {tmp_path / 'runs'}\nstages: [sample]\n"
        f"teacher: {{addresses: ['127.0.0.1:{free_port()}'], timeout_s: 5, connect_timeout_s: 2}}\n"
        "sampling: {max_attempts: 1, retry_delay_s: 0}\n"
    )
    result = cli("run", str(recipe))
    assert (tmp_path / "runs" / "trial" / "config.yaml").is_file()
    assert result.returncode == 2, result.stderr
    assert "error" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_validate_rejects_unknown_names_with_a_suggestion(repo_root: Path) -> None:
    demo = repo_root / "configs" / "demo.yaml"
    result = cli("config", "validate", str(demo), "sampling.dataset=gsm9k", "training.student.model=smollm2-135m")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())  # rich wraps long lines at the terminal width
    assert (
        "override 'sampling.dataset=gsm9k': sampling.dataset: unknown dataset 'gsm9k' (did you mean 'gsm8k'?)" in text
    )
    assert "training.student.model: unknown model 'smollm2-135m' (did you mean 'smollm2-135m-instruct'?)" in text

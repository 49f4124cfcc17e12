"""``cotdistill align TEACHER STUDENT TEXT``: JSON with the aligned pairs and coverage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotdistill.pipeline import cli


def run_align(*args: str, stdin: str | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(cli.app, ["align", *args], input=stdin)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_tiny_models_by_path(tiny_models: dict[str, Path]) -> None:
    text = " Tom has 12 apples. 12 + 3 = 15."
    report = run_align(str(tiny_models["teacher"]), str(tiny_models["student"]), text)
    assert report["teacher"]["path"] == str(tiny_models["teacher"]) and not report["same_tokenizer"]
    pairs, coverage = report["pairs"], report["coverage"]
    student_tokens = {p["student"]: p["student_token"] for p in pairs}  # every token is in a pair
    assert "".join(student_tokens[j] for j in sorted(student_tokens)) == text
    kd = [p for p in pairs if p["kd"]]
    assert coverage["with_teacher_distribution"] == len(kd) > 0
    assert coverage["fraction"] == pytest.approx(len(kd) / coverage["student_tokens"])
    assert all(p["teacher_token"] == p["student_token"] for p in kd)
    assert all(p["student_id_of_teacher_token"] == p["student_id"] for p in kd)
    # Same tokenizer on both sides: everything matches.
    same = run_align(str(tiny_models["student"]), str(tiny_models["student"]), "-", stdin=text)
    assert same["same_tokenizer"] and same["coverage"]["fraction"] == 1.0


def test_qwen_to_gemma_digits_take_ordinary_pieces(real_tokenizers: dict[str, Path]) -> None:
    report = run_align(
        str(real_tokenizers["qwen2.5-coder-0.5b-instruct"]),
        str(real_tokenizers["gemma-3-270m"]),
        "Tom has 5 apples. 5 + 12 = 17.",
    )
    assert report["coverage"]["fraction"] == 1.0  # both cut this text the same way
    assert report["coverage"]["teacher_token_maps_to_student_token"] == 1.0
    five = [p for p in report["pairs"] if p["student_token"] == "5"]
    assert five and all(p["kd"] and p["student_piece"] == "5" for p in five)  # not <0x35>
    # Lone bytes (no ordinary Gemma piece) are the only teacher tokens sent to <0xNN>.
    assert 0 < report["vocabulary"]["mapped_to_byte_fallback"] < 300


def test_student_text_aligns_a_rendered_completion(tiny_models: dict[str, Path]) -> None:
    # The trainer's case: the teacher generated " \n\n<rationale>", the student reads the
    # rendered completion " <rationale> --> <answer> END".
    report = run_align(
        str(tiny_models["teacher"]),
        str(tiny_models["student"]),
        " \n\n3 apples and 4 more make 3 + 4 = 7.",
        "--student-text",
        " 3 apples and 4 more make 3 + 4 = 7. --> 7 END",
    )
    kd = [p for p in report["pairs"] if p["kd"]]
    assert len(kd) >= 10 and all(p["student_token"] == p["teacher_token"] for p in kd)
    assert max(p["student"] for p in kd) < report["student"]["tokens"] - 4  # " --> 7 END" has no teacher
    assert report["coverage"]["with_teacher_distribution"] < report["student"]["tokens"]


def test_unknown_model_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["cotdistill", "align", "no-such-model", "no-such-model", "x", "--cache-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "Traceback" not in err

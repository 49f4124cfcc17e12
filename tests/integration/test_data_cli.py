"""`cotdistill data` as a user runs it: real process, real files, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.integration.conftest import tool


def data(*args: str, stdin: str | None = None, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    if data_dir is not None:
        env["COTDISTILL_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [tool("cotdistill"), "data", *args], input=stdin, capture_output=True, text=True, check=False, env=env
    )


def test_list_show_and_stats(shared_data: Path) -> None:
    listed = data("list", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {d["name"]: d for d in json.loads(listed.stdout)}
    assert len([n for n, d in names.items() if not d["synthetic"]]) == 13
    assert names["gsm8k"]["splits"] == ["train", "test", "dev", "train_nodev"]

    shown = data("show", "gsm8k", "--split", "dev", "-n", "2", data_dir=shared_data)
    assert shown.returncode == 0, shown.stderr
    assert "gsm8k:train:4041" in shown.stdout and "A boy has 12 oranges" in shown.stdout

    stats = data("stats", "svamp", "--json", data_dir=shared_data)
    assert stats.returncode == 0, stats.stderr
    s = json.loads(stats.stdout)
    assert {k: v["count"] for k, v in s["splits"].items()} == {"train": 700, "test": 300, "all": 1000}
    assert s["answer_type"] == "number" and s["example"]["id"] == "svamp:0"

    table = data("stats", "synthetic_coin_flip")
    assert table.returncode == 0 and "2000" in table.stdout and "yes" in table.stdout


def test_extract_adds_answers_and_rejects_bad_lines_without_partial_output() -> None:
    lines = [
        {"completion": "9 * 2 = 18 dollars. The answer is 1,018.", "id": 1},
        {"completion": " 3 + 4 = 7. --> 7 END 12", "format": "ft_cot"},
        {"completion": "no number"},
    ]
    ok = data("extract", "gsm8k", stdin="".join(json.dumps(x) + "\n" for x in lines))
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(x)["answer"] for x in ok.stdout.splitlines()] == ["1018", "7", None]
    assert json.loads(ok.stdout.splitlines()[0])["id"] == 1
    # --mode kojima: Zero-shot-CoT's cleansing finds no answer where the answer part holds none.
    unclear = {"completion": "9 * 2 = 18.\nTherefore, the answer (arabic numerals) is unclear."}
    faithful = data("extract", "gsm8k", "--mode", "kojima", stdin=json.dumps(unclear) + "\n")
    assert faithful.returncode == 0, faithful.stderr
    assert json.loads(faithful.stdout)["answer"] is None

    bad = data("extract", "gsm8k", stdin=json.dumps(lines[0]) + "\n" + '{"text": "x"}\n')
    assert bad.returncode == 2
    assert "<stdin>:2: completion: missing" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stdout == ""  # nothing half-written

    unknown = data("show", "gsm9k")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "unknown dataset 'gsm9k' (did you mean 'gsm8k'?); known datasets: gsm8k, svamp" in unknown.stderr


def test_missing_data_dir_and_malformed_file_are_one_line_errors(tmp_path: Path) -> None:
    missing = data("stats", "gsm8k", data_dir=tmp_path / "absent")
    assert missing.returncode == 2 and "COTDISTILL_DATA_DIR" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "gsm8k/kojima").mkdir(parents=True)
    (tmp_path / "gsm8k/kojima/test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"question": 5}\n')
    (tmp_path / "gsm8k/openai_grade_school_math").mkdir(parents=True)
    (tmp_path / "gsm8k/openai_grade_school_math/train.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    broken = data("show", "gsm8k", "--split", "test", data_dir=tmp_path)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "gsm8k/kojima/test.jsonl:2: question: expected str" in broken.stderr


def test_import_writes_a_sample_shard_the_filter_stage_reads(tmp_path: Path) -> None:
    from cotdistill.common.samples import read_samples
    from cotdistill.common.tasks import load_dataset

    ex = load_dataset("synthetic_coin_flip", "train", limit=2)
    lines = [{"example_id": e.id, "rationale": f"{e.rationale} The answer is {e.answer}."} for e in ex]
    lines.append({"example_id": ex[0].id, "rationale": "Unsure. The answer is maybe."})
    src = tmp_path / "outside.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = data("import", str(src), "synthetic_coin_flip", "--out", str(tmp_path / "run"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["samples"] == 3 and summary["would_keep"]["kept"] == 2
    table = read_samples(tmp_path / "run" / "samples")
    assert table.example_id == [ex[0].id, ex[1].id, ex[0].id] and table.correct == [True, True, False]

    src.write_text(json.dumps({"example_id": "nope", "rationale": "r"}) + "\n")
    bad = data("import", str(src), "synthetic_coin_flip", "--out", str(tmp_path / "run2"))
    assert bad.returncode == 2 and "outside.jsonl:1: example_id" in bad.stderr
    assert not (tmp_path / "run2").exists()

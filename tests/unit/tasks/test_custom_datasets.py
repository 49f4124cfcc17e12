"""Custom datasets (JSONL/CSV/Parquet/datasets folder with a column mapping) and malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotdistill.common.errors import ConfigError
from cotdistill.common.tasks import (
    ColumnMapping,
    MalformedDataError,
    extract_answer,
    get_dataset_info,
    load_custom_file,
    load_dataset,
    register_custom_dataset,
)
from cotdistill.common.tasks.loaders import originals
from cotdistill.common.tasks.loaders.readers import read_tsv

ROWS = [
    {"qid": "a", "prompt": "What is 2+3?", "label": "5", "why": "2 + 3 = 5."},
    {"qid": "b", "prompt": "What is 10-4?", "label": "6.0", "why": "10 - 4 = 6."},
]
MAPPING = ColumnMapping(question="prompt", answer="label", rationale="why", id="qid")


def _check(examples: list) -> None:
    assert [(e.id, e.question, e.answer, e.rationale) for e in examples] == [
        ("mine:a", "What is 2+3?", "5", "2 + 3 = 5."),
        ("mine:b", "What is 10-4?", "6", "10 - 4 = 6."),
    ]


def test_jsonl_csv_parquet_with_mapping(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    csv_file = tmp_path / "d.csv"
    csv_file.write_text(
        "qid,prompt,label,why\n" + "".join(f'{r["qid"]},{r["prompt"]},{r["label"]},"{r["why"]}"\n' for r in ROWS)
    )
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet)
    for path in (jsonl, csv_file, parquet):
        _check(load_custom_file(path, name="mine", answer_type="number", mapping=MAPPING))


def test_hf_save_to_disk_folder_and_registration(tmp_path: Path) -> None:
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])})
    dd.save_to_disk(str(tmp_path / "hf"))
    _check(load_custom_file(tmp_path / "hf", name="mine", answer_type="number", mapping=MAPPING, split="train"))
    with pytest.raises(MalformedDataError, match="split: choose one of the saved splits: train, test"):
        load_custom_file(tmp_path / "hf", name="mine", answer_type="number", mapping=MAPPING)
    info = register_custom_dataset(
        "unit_custom_hf", tmp_path / "hf", answer_type="number", mapping=MAPPING, replace=True
    )
    assert set(info.splits) == {"train", "test"}
    assert len(load_dataset("unit_custom_hf", "train")) == 2 and len(load_dataset("unit_custom_hf", "test")) == 1
    assert get_dataset_info("unit_custom_hf").answer_type == "number"
    assert extract_answer("so 7", "unit_custom_hf") == "7"


def test_choice_and_gsm8k_style_answers(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text(
        json.dumps({"question": "Pick the fruit.", "options": ["car", "apple"], "answer": "apple"}) + "\n"
        + json.dumps({"question": "Pick the car.", "options": ["car", "apple"], "answer": "A"}) + "\n"
    )  # fmt: skip
    ex = load_custom_file(f, name="c", answer_type="choice", mapping=ColumnMapping(choices="options"))
    assert ex[0].question == "Pick the fruit. Answer choices: (A) car, (B) apple."
    assert [e.answer for e in ex] == ["B", "A"] and ex[0].choices == ("car", "apple")
    g = tmp_path / "g.jsonl"
    g.write_text(json.dumps({"question": "q", "answer": "Add <<1+1=2>>2.\n#### 2"}) + "\n")
    (e,) = load_custom_file(g, name="g", answer_type="number")
    assert (e.answer, e.rationale) == ("2", "Add 2.")


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bad.jsonl", '{"question": "q", "answer": "1"}\n{"question": "q2", "answer": }\n', r"bad.jsonl:2: invalid"),
        ("bad.jsonl", '{"question": "q", "answer": "1"}\n\n{"answer": "2"}\n', r"bad.jsonl:3: question: missing"),
        ("bad.jsonl", '{"question": "q", "answer": "seven"}\n', r"bad.jsonl:1: answer: not a number: 'seven'"),
        ("bad.jsonl", '[1, 2]\n', r"bad.jsonl:1: expected a JSON object"),
        ("bad.csv", "question,answer\nq1,1\nq2,\n", r"bad.csv:3: answer: empty value"),
        ("bad.txt", "x", r"bad.txt: unknown file type"),
    ],
)  # fmt: skip
def test_malformed_custom_files_name_file_line_and_field(tmp_path: Path, name: str, content: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(MalformedDataError, match=match) as err:
        load_custom_file(path, name="m", answer_type="number")
    assert isinstance(err.value, ConfigError)  # the CLI prints it as one line, exit code 2


def test_malformed_original_formats(tmp_path: Path) -> None:
    gsm = tmp_path / "test.jsonl"
    gsm.write_text('{"question": "q", "answer": "x\\n#### 4"}\n{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(MalformedDataError, match=r"test.jsonl:2: answer: GSM8K answer lacks"):
        originals.gsm8k_jsonl(gsm, "gsm8k", "gsm8k:test")
    svamp = tmp_path / "SVAMP.json"
    svamp.write_text('[{"Body": "b", "Question": "q", "Answer": 1.0}, {"Body": "b", "Answer": 2}]')
    with pytest.raises(MalformedDataError, match=r"SVAMP.json\[1\]: Question: missing field"):
        originals.kojima_math_json(svamp, "svamp", ("Body", "Question"), "Answer")
    svamp.write_text('[{"Body": "b",\n "Question": "q" "Answer": 1.0}]')
    with pytest.raises(MalformedDataError, match=r"SVAMP.json:2: invalid JSON"):
        originals.kojima_math_json(svamp, "svamp", ("Body", "Question"), "Answer")
    bb = tmp_path / "task.json"
    bb.write_text(json.dumps({"examples": [{"input": "q", "target_scores": {"a": 0, "b": 0}}]}))
    with pytest.raises(MalformedDataError, match=r"task.json\[0\]: target_scores: expected exactly one"):
        originals.bigbench_choice(bb, "tracking_shuffled_objects")
    bb.write_text(json.dumps({"items": []}))
    with pytest.raises(MalformedDataError, match=r"task.json:1: examples: missing top-level field"):
        originals.bigbench_choice(bb, "tracking_shuffled_objects")
    tsv = tmp_path / "x.tsv"
    tsv.write_text("q\ta\tcot\nq2\ta2\n")
    with pytest.raises(MalformedDataError, match=r"x.tsv:2: expected 3 tab-separated fields, got 2"):
        read_tsv(tsv, 3)
    xml = tmp_path / "ASDiv.xml"
    xml.write_text("<Root><ProblemSet><Problem ID='p1'><Body>b</Body><Answer>3</Answer></Problem></ProblemSet></Root>")
    with pytest.raises(MalformedDataError, match=r"ASDiv.xml\[p1\]: Question: missing element"):
        originals.asdiv_xml(xml, "asdiv")
    xml.write_text("<Root>\n<Problem>\n</Root>")
    with pytest.raises(MalformedDataError, match=r"ASDiv.xml:3: invalid XML"):
        originals.asdiv_xml(xml, "asdiv")


def test_broken_split_file_in_a_data_dir(tmp_path: Path, shared_data: Path) -> None:
    """A copy of the data dir with a corrupted split file fails with the file and split named."""
    root = tmp_path / "data"
    (root / "svamp/kojima").mkdir(parents=True)
    (root / "svamp/reasoning_teacher").mkdir(parents=True)
    (root / "svamp/kojima/SVAMP.json").write_bytes((shared_data / "svamp/kojima/SVAMP.json").read_bytes())
    (root / "svamp/reasoning_teacher/svamp__default.json").write_text('{"train": [0, 1, 5000]}')
    with pytest.raises(MalformedDataError, match=r"svamp__default.json:1: train: index 5000 out of range"):
        load_dataset("svamp", "train", data_dir=root)
    with pytest.raises(MalformedDataError, match=r"svamp__default.json:1: test: missing split"):
        load_dataset("svamp", "test", data_dir=root)

"""Filtering of teacher samples (stats by reason) and import of outside completions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotdistill.common.samples import SampleRecord, read_samples, write_shard
from cotdistill.common.tasks import MalformedDataError, filter_samples, import_completions, load_dataset


def _s(ex: str, rationale: str, pred: str | None, gold: str = "5", **kw: object) -> SampleRecord:
    return SampleRecord(
        example_id=ex,
        sample_index=0,
        prompt="p",
        rationale=rationale,
        prediction=pred,
        gold=gold,
        dataset="gsm8k",
        **kw,
    )  # type: ignore[arg-type]


def test_filter_counts_every_reason() -> None:
    samples = [
        _s("a", "2 + 3 = 5.", "5"),  # kept
        _s("a", "2  +  3 = 5.", "5"),  # duplicate (whitespace-normalized)
        _s("b", "2 + 3 = 5.", "5"),  # same text, other example: kept
        _s("a", "2 + 2 = 4.", "4"),  # incorrect
        _s("a", "   ", "5"),  # empty
        _s("c", "no idea", None),  # no answer
        _s("c", "x" * 500, "5"),  # too long
        _s("c", "5.0 it is", "5.0"),  # numeric tolerance: correct, kept
        _s("d", "cut off", "5", finish_reason="length"),  # truncated
        _s("e", "explicit", "9", correct=True),  # `correct` wins over prediction/gold
    ]
    kept, stats = filter_samples(samples, max_rationale_chars=100, drop_truncated=True)
    assert [k.rationale for k in kept] == ["2 + 3 = 5.", "2 + 3 = 5.", "5.0 it is", "explicit"]
    d = stats.to_dict()
    assert d["total"] == 10 and d["kept"] == 4 and d["dropped_total"] == 6
    assert d["dropped"] == {
        "empty_rationale": 1, "no_answer": 1, "incorrect": 1, "truncated": 1,
        "too_short": 0, "too_long": 1, "duplicate": 1,
    }  # fmt: skip
    assert d["examples_total"] == 5 and d["examples_kept"] == 4
    assert d["settings"]["max_rationale_chars"] == 100
    json.dumps(d)  # serializable


def test_filter_switches() -> None:
    samples = [_s("a", "r", "4"), _s("a", "r", "4")]
    kept, stats = filter_samples(samples, require_correct=False, dedupe=False)
    assert len(kept) == 2 and stats.kept_fraction == 1.0
    kept, _ = filter_samples(samples, require_correct=False)
    assert len(kept) == 1
    with pytest.raises(ValueError, match="max_rationale_chars"):
        filter_samples(samples, max_rationale_chars=0)


def test_stats_written_atomically(tmp_path: Path) -> None:
    _, stats = filter_samples([_s("a", "r", "5")])
    path = stats.write_json(tmp_path / "run" / "filter_stats.json")
    assert json.loads(path.read_text())["kept"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["filter_stats.json"]


def test_import_completions_by_id_and_question(tmp_path: Path) -> None:
    test = load_dataset("synthetic_arithmetic", "test", limit=3)
    lines = [
        {"example_id": test[0].id, "rationale": f"so {test[0].answer}", "token_ids": [5, 6],
         "token_logprobs": [-0.1, -0.2], "top_ids": [[5, 7], [6, 8]], "top_logprobs": [[-0.1, -2.0], [-0.2, -3.0]]},
        {"example_id": test[0].id, "rationale": "second sample", "answer": "999"},
        {"question": test[1].question, "completion": f"The answer is {test[1].answer}.", "finish_reason": "length"},
    ]  # fmt: skip
    f = tmp_path / "outside.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    records = import_completions(f, "synthetic_arithmetic", "test")
    assert [(r.example_id, r.sample_index, r.correct) for r in records] == [
        (test[0].id, 0, True), (test[0].id, 1, False), (test[1].id, 0, True),
    ]  # fmt: skip
    assert records[0].top_k == 2 and list(records[0].top_ids) == [5, 7, 6, 8]
    assert records[0].prompt.startswith("Q: ") and records[1].prediction == "999"
    assert records[2].finish_reason == "length" and records[2].gold == test[1].answer
    # the records are valid sample shards
    write_shard(tmp_path / "s.parquet", records)
    assert len(read_samples(tmp_path / "s.parquet")) == 3


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ({"example_id": "nope", "rationale": "r"}, r"outside.jsonl:2: example_id: 'nope' is not in"),
        ({"question": "unknown?", "rationale": "r"}, r"outside.jsonl:2: question: no synthetic_arithmetic/test"),
        ({"rationale": "r"}, r"outside.jsonl:2: example_id: need example_id"),
        ({"id": "synthetic_arithmetic:test:0"}, r"outside.jsonl:2: rationale: missing"),
        ({"id": "synthetic_arithmetic:test:0", "rationale": "r", "token_ids": [1], "token_logprobs": [0.1, 0.2]},
         r"outside.jsonl:2: token_logprobs: 2 entries for 1 tokens"),
        ({"id": "synthetic_arithmetic:test:0", "rationale": "r", "token_ids": [1],
          "top_ids": [["a"]], "top_logprobs": [[0.1]]},
         r"outside.jsonl:2: top_ids\[0\]: expected a list of numbers"),
        ({"id": "synthetic_arithmetic:test:0", "rationale": "r", "finish_reason": "eos"}, r"finish_reason: 'eos'"),
    ],
)  # fmt: skip
def test_import_errors_name_line_and_field(tmp_path: Path, line: dict, match: str) -> None:
    f = tmp_path / "outside.jsonl"
    good = {"id": "synthetic_arithmetic:test:0", "rationale": "fine"}
    f.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(MalformedDataError, match=match):
        import_completions(f, "synthetic_arithmetic", "test")


def test_truncated_samples_are_dropped_by_default() -> None:
    samples = [_s("a", "2 + 3 = 5.", "5"), _s("b", "2 + 3 = 5 and then", "5", finish_reason="length")]
    kept, stats = filter_samples(samples)
    assert [s.example_id for s in kept] == ["a"] and stats.dropped["truncated"] == 1
    kept, stats = filter_samples(samples, drop_truncated=False)
    assert len(kept) == 2 and stats.dropped["truncated"] == 0


def test_a_looping_teacher_shows_as_truncated_and_an_unread_answer_as_no_answer() -> None:
    samples = [
        _s("a", "- B\n- I\n- T\n- B\n- I", "t", finish_reason="length"),  # cut off and wrong
        _s("b", "the coin is still heads up", None, correct=False),  # the teacher found no answer
    ]
    _, stats = filter_samples(samples)
    assert stats.dropped["truncated"] == 1 and stats.dropped["no_answer"] == 1 and stats.dropped["incorrect"] == 0

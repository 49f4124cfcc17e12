"""The filter stage: correct, non-duplicate samples -> train/ shards + filter_stats.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import ConfigError
from cotdistill.common.samples import SampleRecord, read_samples, write_shard
from cotdistill.pipeline.run_config import SamplingSection
from cotdistill.pipeline.sampling.stage import job_spec, run_filter
from cotdistill.pipeline.stages import STAGES


def sample(example: str, index: int, rationale: str, correct: bool) -> SampleRecord:
    return SampleRecord(
        example_id=example,
        sample_index=index,
        prompt="Q",
        rationale=rationale,
        prediction="4" if correct else "5",
        gold="4",
        correct=correct,
        token_ids=[1, 2],
        top_k=2,
        top_ids=[1, 2, 3, 4],
        top_logprobs=[-0.1, -2.0, -0.2, -1.5],
    )


def test_keeps_correct_unique_samples_and_writes_statistics(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    write_shard(
        tmp_path / "samples" / "part-00000-aaaaaaaaaaaaaaaaaaaa.parquet",
        [sample("a", 0, "r1", True), sample("a", 1, "r1", True), sample("a", 2, "r2", False)],
        {"teacher": {"model_id": "t"}, "unit_id": "aaaaaaaaaaaaaaaaaaaa"},
    )
    write_shard(tmp_path / "samples" / "part-00001-bbbbbbbbbbbbbbbbbbbb.parquet", [sample("b", 0, "r3", True)])
    stats = run_filter(store, Console(quiet=True))
    assert stats["total"] == 4 and stats["kept"] == 2
    assert stats["dropped"]["duplicate"] == 1 and stats["dropped"]["incorrect"] == 1
    assert json.loads((tmp_path / "train" / "filter_stats.json").read_text())["kept"] == 2
    kept = read_samples(tmp_path / "train")
    assert sorted(zip(kept.example_id, kept.sample_index.tolist(), strict=True)) == [("a", 0), ("b", 0)]
    assert kept.k == 2 and kept.top_ids.tolist()[0] == [1, 2]
    assert kept.metadata.teacher.model_id == "t" and kept.metadata.unit_id == ""


def test_without_samples_it_says_to_sample_first(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run the sample stage first"):
        run_filter(ArtifactStore(tmp_path), Console(quiet=True))


def test_stages_are_registered_for_cotdistill_run() -> None:
    assert STAGES["sample"].run is not None and STAGES["filter"].run is not None


def test_two_stage_uses_the_datasets_trigger_as_fine_tune_cot_renders_it() -> None:
    spec = job_spec(SamplingSection(dataset="gsm8k", two_stage=True))
    assert spec.params.answer_trigger == " \nTherefore, the answer (arabic numerals) is"
    assert job_spec(SamplingSection(dataset="gsm8k")).params.answer_trigger is None

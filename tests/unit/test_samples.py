"""Sample shards: write atomically, read back as flat arrays with offsets, metadata kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cotdistill.common.samples import SampleRecord, read_samples, shard_metadata, write_shard


def record(i: int, t: int, k: int) -> SampleRecord:
    rng = np.random.default_rng(i)
    top = -rng.random((t, k)) * 5
    top -= np.logaddexp.reduce(top, axis=1, keepdims=True) + np.log(1.25)  # candidates hold 80% of the mass
    return SampleRecord(
        example_id=f"ex{i}",
        sample_index=i % 2,
        prompt=f"Q{i}",
        rationale=f"R{i}",
        gold="3",
        prediction="3",
        correct=True,
        token_ids=list(range(t)),
        token_logprobs=(-rng.random(t)).tolist(),
        top_k=k,
        top_ids=rng.integers(0, 300, t * k).tolist(),
        top_logprobs=top.reshape(-1).tolist(),
    )


def test_round_trip_flat_arrays_and_offsets(tmp_path: Path) -> None:
    records = [record(i, t, 5) for i, t in enumerate([3, 0, 7])]
    write_shard(tmp_path / "part-00000.parquet", records[:2], {"teacher_model": "tiny"})
    write_shard(tmp_path / "part-00001.parquet", records[2:], {"teacher_model": "tiny"})
    table = read_samples(tmp_path)
    assert len(table) == 3
    assert table.k == 5
    assert list(table.token_offsets) == [0, 3, 3, 10]
    assert table.top_ids.shape == (10, 5)
    # Rows come back sorted by logprob (highest first) with the same (id, logprob) pairs.
    got = table.top_ids[table.tokens(2)]
    want = np.asarray(records[2].top_ids).reshape(-1, 5)
    np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(want, axis=1))
    # uint8 codes on a grid of 1/16 nat near the best candidate, scaled to the stored top-k mass
    np.testing.assert_allclose(
        np.sort(table.top_logprobs[:3], axis=1),
        np.sort(np.reshape(records[0].top_logprobs, (3, 5)), axis=1),
        atol=1 / 8,  # half a step (1/16 nat up to 4 nats below the best, 1/8 beyond) plus the mass scaling
    )
    assert table.metadata.teacher.model_id == "tiny"  # the old top-level key, read into its one place
    assert shard_metadata(tmp_path / "part-00000.parquet").schema_version == 3


def test_shape_errors_name_the_field() -> None:
    bad = record(0, 4, 5)
    bad.top_ids = list(bad.top_ids)[:-1]
    with pytest.raises(ValueError, match="top_ids/top_logprobs"):
        bad.validate()


def test_no_shards_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no sample shards"):
        read_samples(tmp_path)


def test_failed_write_leaves_no_partial_shard(tmp_path: Path) -> None:
    bad = record(0, 2, 3)
    bad.top_ids = [1]
    with pytest.raises(ValueError):
        write_shard(tmp_path / "part-00000.parquet", [bad])
    assert list(tmp_path.iterdir()) == []


def test_shard_metadata_stores_each_fact_once_and_reads_the_old_duplicates(tmp_path: Path) -> None:
    from cotdistill.common.samples import ShardMetadata, TeacherFacts, TokenizerFacts

    teacher = TeacherFacts(model_id="t", max_top_k=20, tokenizer=TokenizerFacts(name="tok", content_hash="h1"))
    record = SampleRecord(example_id="e", sample_index=0, prompt="q", rationale="r")
    path = write_shard(tmp_path / "new.parquet", [record], ShardMetadata(teacher=teacher, prompt_template="chat"))
    raw = json.loads(pq.read_schema(path).metadata[b"cotdistill"])
    assert raw["teacher"]["tokenizer"]["content_hash"] == "h1" and raw["prompt_template"] == "chat"
    assert "tokenizer_hash" not in raw and "teacher_model" not in raw and "unit_id" not in raw
    back = shard_metadata(path)
    assert back.teacher == teacher and back.tokenizer_hash == "h1" and back.schema_version == 3
    # A shard of the old layout: hash and model id also at the top level, the teacher partly filled.
    old = ShardMetadata.from_dict({"teacher": {"backend": "vllm"}, "tokenizer_hash": "h0", "teacher_model": "m0"})
    assert (old.tokenizer_hash, old.teacher.model_id, old.teacher.backend) == ("h0", "m0", "vllm")
    unknown = ShardMetadata.from_dict({"teacher": "not a mapping", "future_key": [1]})
    assert unknown.teacher == TeacherFacts() and unknown.to_dict()["future_key"] == [1]

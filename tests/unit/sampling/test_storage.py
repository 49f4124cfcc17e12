"""Compact top-k storage: exact ids, logprobs on the grid, top-k mass and KD loss kept, old shards read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotdistill.common.samples import (
    MASS_STEP,
    SCHEMA_V1,
    TOP_COLUMNS,
    SampleRecord,
    decode_top_k,
    encode_top_k,
    grid_levels,
    read_records,
    read_samples,
    shard_metadata,
    shard_vocab,
    write_shard,
)

DATA = Path(__file__).parent / "data"


def top_k(
    t: int, vocab: int, k: int, seed: int = 0, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(t, vocab)) * 3.0 / temperature
    logprobs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    ids = np.argsort(-logprobs, axis=1)[:, :k]
    return ids.astype(np.int32), np.take_along_axis(logprobs, ids, axis=1), logprobs


def round_trip(ids: np.ndarray, lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vocab = shard_vocab(ids)
    return decode_top_k(encode_top_k(ids, lps, vocab), vocab)


def kd_forward_kl(top_lp: np.ndarray, top_ids: np.ndarray, student_lp: np.ndarray, mass: str) -> np.ndarray:
    """Per-token forward KL over the teacher top-k, as the trainer computes it. (T,)

    ``renormalize``: both sides renormalized over the k candidates; ``tail_bucket``: a (k+1)-th
    bucket holds 1 - sum(top-k) of each side.
    """
    q = np.take_along_axis(student_lp, top_ids, axis=1)
    if mass == "renormalize":
        logp = top_lp - np.logaddexp.reduce(top_lp, axis=1, keepdims=True)
        logq = q - np.logaddexp.reduce(q, axis=1, keepdims=True)
    else:
        tail = lambda x: np.log(np.clip(1 - np.exp(np.logaddexp.reduce(x, axis=1)), 1e-12, None))[:, None]  # noqa: E731
        logp, logq = np.hstack([top_lp, tail(top_lp)]), np.hstack([q, tail(q)])
    return (np.exp(logp) * (logp - logq)).sum(axis=1)


def test_round_trip_keeps_pairs_rank_order_and_mass() -> None:
    ids, lps, _ = top_k(200, 1000, 8)
    got_ids, got_lps = round_trip(ids, lps)
    assert got_ids.dtype == np.int32 and got_lps.dtype == np.float32
    assert np.all(np.diff(got_lps, axis=1) <= 0)  # rows sorted by logprob, highest first
    levels = grid_levels()
    for row in range(len(ids)):
        want = dict(zip(ids[row].tolist(), lps[row].tolist(), strict=True))
        best = max(want.values())
        for i, lp in zip(got_ids[row].tolist(), got_lps[row].tolist(), strict=True):
            below = best - want[i]
            # The distance to the best candidate is on the grid: within half a step of it.
            step = np.diff(levels)[min(np.searchsorted(levels, below), len(levels) - 2)]
            assert abs((got_lps[row, 0] - lp) - below) <= step / 2 + 1e-5
    # ... and the top-k mass within half a mass step (in logit), so 1 - mass stays right too.
    logit = lambda lp: np.log(np.exp(lp).sum(axis=1)) - np.log1p(-np.exp(lp).sum(axis=1))  # noqa: E731
    assert np.abs(logit(got_lps.astype(np.float64)) - logit(lps)).max() <= MASS_STEP / 2 + 1e-4


def test_padding_absent_candidates_and_far_tail() -> None:
    # Row 0: padded (-1) candidates; row 1: a real id with logprob -inf (outside top-p, processed
    # mode) and one 60 nats below the best, far past the fine part of the grid.
    ids = np.array([[5, 9, -1, -1], [3, 1, 2, 0]])
    lps = np.array([[-0.1, -30.0, -np.inf, -np.inf], [-0.5, -1.0, -np.inf, -60.5]])
    got_ids, got_lps = round_trip(ids, lps)
    assert got_ids[0].tolist() == [5, 9, -1, -1] and np.isneginf(got_lps[0, 2:]).all()
    assert got_ids[1].tolist() == [3, 1, 0, 2] and np.isneginf(got_lps[1, 3])
    assert got_lps[1, 2] - got_lps[1, 0] == pytest.approx(-60.0, abs=0.5)
    assert got_lps[0, 1] - got_lps[0, 0] == pytest.approx(-29.9, abs=0.5)


def test_frequent_candidates_get_small_indices_and_many_distinct_ids_use_wide_gaps() -> None:
    vocab = shard_vocab(np.array([[7, 3, 9], [7, 3, 1], [7, 2, 8], [7, 5, 6]]))  # 7: 4x, 3: 2x
    assert vocab[0] == 7 and vocab[1] == 3 and sorted(vocab[2:].tolist()) == vocab[2:].tolist()
    ids = np.arange(70_000).reshape(-1, 20)[:, ::-1]  # 70,000 distinct ids: gaps up to 69,981
    lps = np.tile(-np.arange(20.0), (len(ids), 1)) / 4
    vocab = shard_vocab(ids)
    encoded = encode_top_k(ids, lps, vocab)
    assert encoded.gaps.dtype == np.uint32
    got_ids, _ = decode_top_k(encoded, vocab)
    np.testing.assert_array_equal(got_ids, ids)


def test_an_id_outside_the_vocabulary_is_an_error() -> None:
    with pytest.raises(ValueError, match="top_ids: id 4 is not in the shard vocabulary"):
        encode_top_k(np.array([[1, 4]]), np.array([[-0.1, -2.0]]), np.array([1, 2], np.int32))


def records_of(ids: np.ndarray, lps: np.ndarray, tokens_per_sample: int = 100) -> list[SampleRecord]:
    t, k = ids.shape
    return [
        SampleRecord(
            example_id=f"e{i}",
            sample_index=0,
            prompt="q",
            rationale="r",
            token_ids=ids[i : i + tokens_per_sample, 0].tolist(),
            top_k=k,
            top_ids=ids[i : i + tokens_per_sample].reshape(-1).tolist(),
            top_logprobs=lps[i : i + tokens_per_sample].reshape(-1).tolist(),
        )
        for i in range(0, t, tokens_per_sample)
    ]


@pytest.mark.parametrize("mass", ["renormalize", "tail_bucket"])
def test_kd_loss_from_stored_values_within_1e3(tmp_path: Path, mass: str) -> None:
    t, vocab, k = 2000, 4096, 20
    ids, lps, full = top_k(t, vocab, k, seed=1)
    rng = np.random.default_rng(2)
    student = full * 0.6 + rng.normal(size=full.shape)
    student -= np.logaddexp.reduce(student, axis=1, keepdims=True)
    table = read_samples(write_shard(tmp_path / "part-00000.parquet", records_of(ids, lps)))
    exact = kd_forward_kl(lps, ids, student, mass)
    stored = kd_forward_kl(table.top_logprobs.astype(np.float64), table.top_ids.astype(np.int64), student, mass)
    assert abs(stored.mean() - exact.mean()) < 1e-3
    assert np.abs(stored - exact).mean() < 1e-2  # per token: rounding noise, not a bias


def top_bytes(path: Path) -> int:
    meta = pq.ParquetFile(path).metadata
    return sum(
        meta.row_group(g).column(c).total_compressed_size
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
        if meta.row_group(g).column(c).path_in_schema.split(".")[0] in TOP_COLUMNS
    )


def test_at_most_2_bytes_per_entry_for_a_tiny_teacher_vocabulary(tmp_path: Path) -> None:
    t, k = 2000, 20
    ids, lps, _ = top_k(t, 512, k, seed=3)
    path = write_shard(tmp_path / "part-00000.parquet", records_of(ids, lps))
    assert top_bytes(path) / (t * k) <= 2.0


@pytest.mark.parametrize("vocab", [300, 151936])
def test_schema_2_shards_read_as_the_schema_2_reader_read_them(vocab: int) -> None:
    # Written and read by the schema-2 code (commit 041e3ad); uint16 and uint32 id gaps.
    path = DATA / f"schema2-vocab{vocab}.parquet"
    assert shard_metadata(path).schema_version == 2
    table = read_samples(path)
    want = np.load(DATA / f"schema2-vocab{vocab}-read.npz")
    for name in ("top_ids", "top_logprobs", "token_ids", "token_offsets"):
        np.testing.assert_array_equal(getattr(table, name), want[name], err_msg=name)
    assert table.k == 4 and len(table) == 3 and table.top_ids[0, 3] == -1


def test_rewriting_a_schema_2_shard_writes_schema_3_without_stale_keys(tmp_path: Path) -> None:
    records, meta = read_records(DATA / "schema2-vocab151936.parquet")
    write_shard(tmp_path / "new.parquet", records, meta)
    new_meta = shard_metadata(tmp_path / "new.parquet")
    assert new_meta.schema_version == 3 and "top_logprob_step" not in new_meta.extra
    assert new_meta.teacher.model_id == "fixture"
    old, new = read_samples(DATA / "schema2-vocab151936.parquet"), read_samples(tmp_path / "new.parquet")
    np.testing.assert_array_equal(np.sort(old.top_ids, axis=1), np.sort(new.top_ids, axis=1))
    finite = np.isfinite(old.top_logprobs)
    np.testing.assert_allclose(new.top_logprobs[finite], old.top_logprobs[finite], atol=0.05)


def test_an_unknown_encoding_is_a_clear_error(tmp_path: Path) -> None:
    path = write_shard(tmp_path / "a.parquet", records_of(*top_k(4, 50, 3)[:2]))
    table = pq.read_table(path)
    meta = {**shard_metadata(path).to_dict(), "top_encoding": "from-the-future"}
    pq.write_table(table.replace_schema_metadata({b"cotdistill": json.dumps(meta).encode()}), path)
    with pytest.raises(ValueError, match="unknown top-k encoding 'from-the-future'"):
        read_samples(path)


def test_version_1_shards_are_still_read(tmp_path: Path) -> None:
    ids, lps, _ = top_k(3, 100, 2)
    row = {name: None for name in SCHEMA_V1.names}
    row.update(
        example_id="e",
        sample_index=0,
        prompt="p",
        rationale="r",
        dataset="",
        split="",
        finish_reason="stop",
        prompt_tokens=1,
    )
    row.update(token_ids=[1, 2, 3], token_logprobs=np.zeros(3, np.float16), top_k=2)
    row.update(top_ids=ids.reshape(-1), top_logprobs=lps.reshape(-1).astype(np.float16))
    table = pa.Table.from_pylist([row], schema=SCHEMA_V1)
    pq.write_table(table, tmp_path / "old.parquet")
    got = read_samples(tmp_path / "old.parquet")
    np.testing.assert_array_equal(got.top_ids, ids)
    np.testing.assert_allclose(got.top_logprobs, lps, atol=5e-3)


def test_records_round_trip_for_rewriting(tmp_path: Path) -> None:
    ids, lps, _ = top_k(40, 300, 3)
    rec = SampleRecord(
        "e",
        1,
        "p",
        "r",
        gold="4",
        correct=True,
        token_ids=list(range(40)),
        top_k=3,
        top_ids=ids.reshape(-1).tolist(),
        top_logprobs=lps.reshape(-1).tolist(),
    )
    write_shard(tmp_path / "a.parquet", [rec], {"teacher_model": "x"})
    (back,), meta = read_records(tmp_path / "a.parquet")
    assert meta.teacher.model_id == "x" and back.gold == "4" and back.correct is True
    write_shard(tmp_path / "b.parquet", [back])  # re-encoding stored values is lossless
    a, b = read_samples(tmp_path / "a.parquet"), read_samples(tmp_path / "b.parquet")
    np.testing.assert_array_equal(a.top_ids, b.top_ids)
    np.testing.assert_array_equal(a.top_logprobs, b.top_logprobs)

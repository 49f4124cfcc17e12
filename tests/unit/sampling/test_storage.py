"""Compact top-k storage: exact ids, logprobs within half a quantization step, KD loss kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cotdistill.common.samples import (
    DEFAULT_LOGPROB_STEP,
    SCHEMA_V1,
    SampleRecord,
    decode_top_k,
    encode_top_k,
    read_records,
    read_samples,
    write_shard,
)


def top_k(
    t: int, vocab: int, k: int, seed: int = 0, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(t, vocab)) * 3.0 / temperature
    logprobs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    ids = np.argsort(-logprobs, axis=1)[:, :k]
    return ids.astype(np.int32), np.take_along_axis(logprobs, ids, axis=1), logprobs


def kd_forward_kl(top_lp: np.ndarray, top_ids: np.ndarray, student_lp: np.ndarray) -> np.ndarray:
    """Per-token forward KL over the renormalized teacher top-k: sum p (log p - log q). (T,)"""
    logp = top_lp - np.logaddexp.reduce(top_lp, axis=1, keepdims=True)
    q = np.take_along_axis(student_lp, top_ids, axis=1)
    return (np.exp(logp) * (logp - q)).sum(axis=1)


def test_round_trip_keeps_pairs_and_rank_order() -> None:
    ids, lps, _ = top_k(50, 1000, 8)
    got_ids, got_lps = decode_top_k(*encode_top_k(ids, lps))
    assert got_ids.dtype == np.int32 and got_lps.dtype == np.float32
    # Same (id, logprob) pairs per token, rows sorted by logprob, highest first.
    assert np.all(np.diff(got_lps, axis=1) <= 0)
    for row in range(50):
        want = dict(zip(ids[row].tolist(), lps[row].tolist(), strict=True))
        for i, lp in zip(got_ids[row].tolist(), got_lps[row].tolist(), strict=True):
            assert abs(want[i] - lp) <= DEFAULT_LOGPROB_STEP / 2 + 1e-6


def test_padding_and_clipped_tail() -> None:
    ids = np.array([[5, 9, -1, -1], [3, 1, 2, 0]])
    lps = np.array([[-0.1, -30.0, -np.inf, -np.inf], [-0.5, -1.0, -2.0, -3.0]])
    got_ids, got_lps = decode_top_k(*encode_top_k(ids, lps))
    assert got_ids[0].tolist() == [5, 9, -1, -1]
    assert got_lps[0, 1] == np.float32(-255 * DEFAULT_LOGPROB_STEP)  # clipped at the range's end
    assert np.isneginf(got_lps[0, 2:]).all()
    assert got_ids[1].tolist() == [3, 1, 2, 0]


def test_large_vocabularies_use_wide_gaps() -> None:
    ids = np.array([[0, 150_000]])
    gaps, _ = encode_top_k(ids, np.array([[-0.1, -0.2]]))
    assert gaps.dtype == np.uint32
    assert decode_top_k(gaps, encode_top_k(ids, np.array([[-0.1, -0.2]]))[1])[0].tolist() == [[0, 150_000]]


def shard_of(ids: np.ndarray, lps: np.ndarray, path: Path, tokens_per_sample: int = 100) -> Path:
    t, k = ids.shape
    records = [
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
    return write_shard(path, records)


def test_kd_loss_from_stored_values_within_1e3(tmp_path: Path) -> None:
    t, vocab, k = 2000, 4096, 20
    ids, lps, full = top_k(t, vocab, k, seed=1)
    rng = np.random.default_rng(2)
    student = full * 0.6 + rng.normal(size=full.shape)
    student -= np.logaddexp.reduce(student, axis=1, keepdims=True)
    table = read_samples(shard_of(ids, lps, tmp_path / "part-00000.parquet"))
    exact = kd_forward_kl(lps, ids, student)
    stored = kd_forward_kl(table.top_logprobs.astype(np.float64), table.top_ids, student)
    assert abs(stored.mean() - exact.mean()) < 1e-3
    assert np.abs(stored - exact).mean() < 1e-2  # per token: rounding noise, not a bias


def test_at_most_2_bytes_per_entry_for_a_tiny_teacher_vocabulary(tmp_path: Path) -> None:
    t, k = 2000, 20
    ids, lps, _ = top_k(t, 512, k, seed=3)
    path = shard_of(ids, lps, tmp_path / "part-00000.parquet")
    meta = pq.ParquetFile(path).metadata.row_group(0)
    columns = [meta.column(i) for i in range(meta.num_columns)]
    top = sum(c.total_compressed_size for c in columns if c.path_in_schema.startswith(("top_ids.", "top_logprobs.")))
    assert top / (t * k) <= 2.0


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
    ids, lps, _ = top_k(4, 300, 3)
    rec = SampleRecord(
        "e",
        1,
        "p",
        "r",
        gold="4",
        correct=True,
        token_ids=[7, 8, 9, 10],
        top_k=3,
        top_ids=ids.reshape(-1).tolist(),
        top_logprobs=lps.reshape(-1).tolist(),
    )
    write_shard(tmp_path / "a.parquet", [rec], {"teacher_model": "x"})
    (back,), meta = read_records(tmp_path / "a.parquet")
    assert meta["teacher_model"] == "x" and back.gold == "4" and back.correct is True
    write_shard(tmp_path / "b.parquet", [back])  # re-encoding stored values is lossless
    a, b = read_samples(tmp_path / "a.parquet"), read_samples(tmp_path / "b.parquet")
    np.testing.assert_array_equal(a.top_ids, b.top_ids)
    np.testing.assert_array_equal(a.top_logprobs, b.top_logprobs)

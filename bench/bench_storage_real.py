"""Top-k storage on a real 152k-vocabulary teacher: bytes per entry and the KD loss it moves.

Input: Qwen2.5-Coder-0.5B-Instruct's own samples (:mod:`bench.real_samples`: 40 MultiArith
train questions x D=2 x <= 160 tokens, chat template, temperature 0.7, top-20 raw logprobs on
the vLLM backend; generated on the first run, then cached under .scratch/bench/storage_real).
They are written the way the sampling job writes them: one shard per work unit of 16 questions
(the run config's default ``unit_size``), so 32 samples per shard.

Ours: the shard format of ``cotdistill.common.samples`` (schema 3). Baselines on the same
records: schema 2 (id-sorted id gaps, uint8 logprobs at 1/16 nat, as written until now) and
schema 1 (int32 ids + float16 logprobs). Bytes: the compressed top-k column chunks over the
number of (id, logprob) entries; whole files per generated token for context.

KD loss: forward KL from the teacher's top-20 to a student of the same vocabulary (the same
model teacher-forced on the same rationales without the question), computed by the trainer's
own ``topk_distributions`` + ``kl`` in both top-k mass modes (``renormalize``,
``tail_bucket``), from the exact float32 values vs the values read back from each format.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.bench_storage import top_column_bytes, v1_bytes
from bench.common import write_result
from bench.real_samples import RealTopK, load_or_generate
from cotdistill.common.samples import SampleRecord, read_samples, shard_bytes

UNIT_SAMPLES = 32  # 16 questions x D=2: one work unit of the sampling job = one shard
V2_STEP = 1 / 16


def records(data: RealTopK) -> list[SampleRecord]:
    out = []
    for i in range(len(data.example_ids)):
        sl = slice(int(data.offsets[i]), int(data.offsets[i + 1]))
        out.append(
            SampleRecord(
                example_id=data.example_ids[i],
                sample_index=int(data.sample_index[i]),
                dataset="multiarith",
                split="train",
                prompt=data.prompts[i],
                rationale=data.rationales[i],
                finish_reason=data.finish_reasons[i],
                token_ids=data.token_ids[sl],
                token_logprobs=data.token_logprobs[sl],
                top_k=data.top_ids.shape[1],
                top_ids=data.top_ids[sl].reshape(-1),
                top_logprobs=data.top_logprobs[sl].reshape(-1),
            )
        )
    return out


def v2_bytes(recs: list[SampleRecord]) -> bytes:
    """The schema-2 writer as it was (``sorted-gap/q8``), for the baseline on the same records."""
    import json

    from cotdistill.common.samples import _TEXT_COLUMNS, COMPRESSION_LEVEL, METADATA_KEY, TOP_COMPRESSION_LEVEL

    gaps, codes = [], []
    for r in recs:
        ids = np.asarray(r.top_ids, np.int64).reshape(len(r.token_ids), r.top_k)
        lps = np.asarray(r.top_logprobs, np.float64).reshape(ids.shape)
        order = np.argsort(ids, axis=1, kind="stable")
        shifted = np.take_along_axis(ids, order, axis=1) + 1
        gaps.append(np.diff(shifted, axis=1, prepend=0).reshape(-1))
        code = np.rint(-np.take_along_axis(lps, order, axis=1) / V2_STEP)
        codes.append(np.clip(np.nan_to_num(code, nan=255.0, posinf=255.0), 0, 255).astype(np.uint8).reshape(-1))
    wide = max(int(g.max()) for g in gaps) > np.iinfo(np.uint16).max
    id_type = pa.uint32() if wide else pa.uint16()
    columns: dict[str, Any] = {name: [getattr(r, name) for r in recs] for name, _ in _TEXT_COLUMNS}
    columns["token_logprobs"] = [np.asarray(v, np.float16) for v in columns["token_logprobs"]]
    columns["top_ids"] = [g.astype(np.uint32 if wide else np.uint16) for g in gaps]
    columns["top_logprobs"] = codes
    fields = [*_TEXT_COLUMNS, ("top_ids", pa.list_(id_type)), ("top_logprobs", pa.list_(pa.uint8()))]
    table = pa.Table.from_arrays([pa.array(columns[n], type=t) for n, t in fields], schema=pa.schema(fields))
    meta = {"schema_version": 2, "top_encoding": "sorted-gap/q8", "top_logprob_step": V2_STEP}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    buffer = io.BytesIO()
    pq.write_table(
        table,
        buffer,
        compression="zstd",
        compression_level={
            **{(f"{n}.list.element" if pa.types.is_list(t) else n): COMPRESSION_LEVEL for n, t in _TEXT_COLUMNS},
            "top_ids.list.element": TOP_COMPRESSION_LEVEL,
            "top_logprobs.list.element": TOP_COMPRESSION_LEVEL,
        },
        use_dictionary=["dataset", "split", "finish_reason", "top_logprobs.list.element"],
        column_encoding={"top_ids.list.element": "BYTE_STREAM_SPLIT"},
    )
    return buffer.getvalue()


def read_back(shards: list[bytes]) -> Any:
    """``read_samples`` over the shards written to a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, data in enumerate(shards):
            (Path(tmp) / f"part-{i:05d}.parquet").write_bytes(data)
        return read_samples(tmp)


def kd_per_token(top_ids: np.ndarray, top_logprobs: np.ndarray, data: RealTopK, mass: str) -> np.ndarray:
    """Per-token forward KL (the trainer's objective) from a teacher top-k (T, k) to the student."""
    import torch

    from cotdistill.trainer.objectives import kl, topk_distributions

    # The student's log-probs are known at the exact candidates: find each stored id among them.
    where = top_ids[:, :, None] == data.top_ids[:, None, :]
    if not bool(where.any(axis=2).all()):
        raise AssertionError("a stored candidate id is not among the exact ones")
    position = torch.from_numpy(np.argmax(where, axis=2).astype(np.int64))
    student = torch.from_numpy(data.student_logprobs.astype(np.float32))
    teacher = torch.from_numpy(np.ascontiguousarray(top_logprobs, dtype=np.float32))
    log_p, log_q = topk_distributions(student, position, teacher, mass)  # type: ignore[arg-type]
    return kl(log_p, log_q).numpy().astype(np.float64)


def measure(name: str, shards: list[bytes], data: RealTopK, exact: dict[str, np.ndarray]) -> dict[str, Any]:
    entries = data.top_ids.size
    tokens = len(data.token_ids)
    top = sum(top_column_bytes(s)[0] for s in shards)
    files = sum(len(s) for s in shards)
    table = read_back(shards)
    figures: dict[str, Any] = {
        "disk_bytes_per_entry": top / entries,
        "disk_bytes_per_token": files / tokens,
        "shards": len(shards),
    }
    for mass, want in exact.items():
        got = kd_per_token(table.top_ids, table.top_logprobs, data, mass)
        figures[f"kd_{mass}_abs_error"] = float(abs(got.mean() - want.mean()))
        figures[f"kd_{mass}_token_mean_abs_error"] = float(np.abs(got - want).mean())
        figures[f"kd_{mass}_token_max_abs_error"] = float(np.abs(got - want).max())
    print(
        f"{name:9s} {figures['disk_bytes_per_entry']:.3f} B/entry, {figures['disk_bytes_per_token']:.1f} B/token; KD "
        + ", ".join(f"{m} error {figures[f'kd_{m}_abs_error']:.1e}" for m in exact),
        flush=True,
    )
    return figures


def read_time(shards: list[bytes]) -> float:
    """Median seconds to read all shards back into one SampleTable (3 rounds)."""
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        read_back(shards)
        rounds.append(time.perf_counter() - start)
    return statistics.median(rounds)


def main() -> None:
    data = load_or_generate()
    recs = records(data)
    units = [recs[i : i + UNIT_SAMPLES] for i in range(0, len(recs), UNIT_SAMPLES)]
    start = time.perf_counter()
    ours = [shard_bytes(u, {"teacher": data.source}) for u in units]
    write_s = time.perf_counter() - start
    v2 = [v2_bytes(u) for u in units]
    v1 = [v1_bytes(u) for u in units]
    exact = {m: kd_per_token(data.top_ids, data.top_logprobs, data, m) for m in ("renormalize", "tail_bucket")}
    results = {
        "schema-3": measure("schema 3", ours, data, exact),
        "schema-2": measure("schema 2", v2, data, exact),
        "schema-1": measure("schema 1", v1, data, exact),
    }
    results["schema-3"]["write_s"] = write_s
    results["schema-3"]["read_s"] = read_time(ours)
    results["schema-2"]["read_s"] = read_time(v2)
    # The shard vocabulary is per shard: how the sizes move with the samples per shard.
    by_size = {}
    for size in (1, 4, UNIT_SAMPLES, len(recs)):
        parts = [recs[i : i + size] for i in range(0, len(recs), size)]
        by_size[str(size)] = {
            "schema-3": sum(top_column_bytes(shard_bytes(p))[0] for p in parts) / data.top_ids.size,
            "schema-2": sum(top_column_bytes(v2_bytes(p))[0] for p in parts) / data.top_ids.size,
        }
        print(f"{size:3d} samples/shard: " + ", ".join(f"{k} {v:.3f}" for k, v in by_size[str(size)].items()))
    lengths = np.diff(data.offsets)
    head = results["schema-3"]
    write_result(
        "storage_real",
        title="Top-k logprob storage on a real 152k-vocab teacher (Qwen2.5-Coder-0.5B, top-20)",
        metric="bytes per top-k entry on disk",
        value=head["disk_bytes_per_entry"],
        baseline_name="schema 2: id-sorted id gaps + uint8 logprobs (zstd)",
        baseline_value=results["schema-2"]["disk_bytes_per_entry"],
        higher_is_better=False,
        goal="<= 2.0 B/entry, KD loss within 1e-3 (both top-k mass modes)",
        figures={
            **results,
            "source": data.source,
            "samples": len(recs),
            "tokens": len(data.token_ids),
            "mean_tokens_per_sample": float(lengths.mean()),
            "entries": data.top_ids.size,
            "distinct_candidate_ids": len(np.unique(data.top_ids)),
            "samples_per_shard": UNIT_SAMPLES,
            "bytes_per_entry_by_samples_per_shard": by_size,
            "teacher_top1_p": float(np.exp(data.top_logprobs[:, 0]).mean()),
            "teacher_top20_mass": float(np.exp(np.logaddexp.reduce(data.top_logprobs, axis=1)).mean()),
            "kd_loss_exact": {m: float(v.mean()) for m, v in exact.items()},
            "load_average_1m": os.getloadavg()[0],
        },
    )


if __name__ == "__main__":
    main()

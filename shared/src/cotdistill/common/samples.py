"""Teacher samples on disk: Parquet shards with compact top-k columns, read back as arrays.

One row per (example, sample index). Token-level data are list columns, so a shard holds many
sequences without per-token Python objects, and readers hand the trainer flat numpy arrays plus
offsets (no Python loop per token):

================  ==================  =====================================================
column            type                meaning
================  ==================  =====================================================
example_id        string              dataset record id (or the caller's prompt id)
sample_index      int32               index among the D samples of that example
dataset, split    string              where the question came from ("" for free prompts)
prompt            string              the exact text the teacher was prompted with
rationale         string              the generated text (stage 1 in two-stage mode)
answer_text       string, nullable    stage-2 answer text (Zero-shot-CoT), when used
prediction        string, nullable    answer extracted from the teacher's text
gold              string, nullable    normalized gold answer
correct           bool, nullable      prediction == gold, when both are known
finish_reason     string              "stop", "length" or "abort"
prompt_tokens     int32               tokens in the prompt
token_ids         list<int32>         generated token ids (T)
token_logprobs    list<float16>       logprob of each generated token (T)
top_k             int32               candidates per token (k; 0 when none were kept)
top_ids           list<uint16|uint32> T*k candidate ids, compact (see below)
top_logprobs      list<uint8>         T*k candidate logprobs, quantized (see below)
================  ==================  =====================================================

Compact top-k encoding (schema version 2, ``top_encoding = "sorted-gap/q8"``), about 1.5-2 bytes
per (id, logprob) entry instead of 6 (int32 + float16), see ``bench/bench_storage.py``:

* each token's k candidates are stored sorted by id; ids are shifted by one (padding id -1
  becomes 0) and stored as gaps to the previous candidate of the same token, so they are small
  numbers that zstd packs well. uint16 when every gap fits, else uint32.
* logprobs become ``round(-logprob / step)`` clipped to 0..255 (uint8), in the same id order;
  ``step`` (nats, default 1/16, so the range is [-15.9, 0]) is in the shard metadata. Values
  below the range (p < 1.2e-7) clip to its end; the KD loss over the renormalized top-k moves by
  well under 1e-3 (the rounding errors are unbiased and average out over tokens).
* readers undo both and sort each token's candidates by logprob again, highest first, so the
  contract of :class:`SampleTable` is the same as for exact values.

Version 1 shards (int32 ids, float16 logprobs, in rank order) are still read.

Shard-level facts (teacher model, tokenizer hash, logprob mode, sampling parameters) live in the
Parquet key-value metadata under ``cotdistill`` as JSON, so every artifact says what made it.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"cotdistill"
SCHEMA_VERSION = 2
TOP_ENCODING = "sorted-gap/q8"
DEFAULT_LOGPROB_STEP = 1 / 16
"""Quantization step of stored top-k logprobs, in nats: 255 steps cover [-15.94, 0]."""
COMPRESSION_LEVEL = 9
TOP_COMPRESSION_LEVEL = 19
"""zstd level of the two top-k columns: ~8% smaller than level 9, still fast at shard sizes."""

_TEXT_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("example_id", pa.string()),
    ("sample_index", pa.int32()),
    ("dataset", pa.string()),
    ("split", pa.string()),
    ("prompt", pa.string()),
    ("rationale", pa.string()),
    ("answer_text", pa.string()),
    ("prediction", pa.string()),
    ("gold", pa.string()),
    ("correct", pa.bool_()),
    ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int32()),
    ("token_ids", pa.list_(pa.int32())),
    ("token_logprobs", pa.list_(pa.float16())),
    ("top_k", pa.int32()),
]


def schema(id_type: pa.DataType = pa.uint16()) -> pa.Schema:
    """The shard schema; ``id_type`` is the type of the top-k id gaps (uint16 or uint32)."""
    return pa.schema([*_TEXT_COLUMNS, ("top_ids", pa.list_(id_type)), ("top_logprobs", pa.list_(pa.uint8()))])


SCHEMA = schema()
SCHEMA_V1 = pa.schema([*_TEXT_COLUMNS, ("top_ids", pa.list_(pa.int32())), ("top_logprobs", pa.list_(pa.float16()))])


@dataclass
class SampleRecord:
    """One teacher sample, as the sampling job produces it."""

    example_id: str
    sample_index: int
    prompt: str
    rationale: str
    dataset: str = ""
    split: str = ""
    answer_text: str | None = None
    prediction: str | None = None
    gold: str | None = None
    correct: bool | None = None
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    token_ids: Sequence[int] | np.ndarray = ()
    token_logprobs: Sequence[float] | np.ndarray = ()
    top_k: int = 0
    top_ids: Sequence[int] | np.ndarray = ()  # T*k, row-major
    top_logprobs: Sequence[float] | np.ndarray = ()  # T*k, row-major

    def validate(self) -> None:
        """Check the shapes of the token columns; raises ValueError naming the field."""
        t = len(self.token_ids)
        if len(self.token_logprobs) and len(self.token_logprobs) != t:
            raise ValueError(f"token_logprobs: {len(self.token_logprobs)} entries for {t} tokens")
        if len(self.top_ids) != t * self.top_k or len(self.top_logprobs) != t * self.top_k:
            raise ValueError(
                f"top_ids/top_logprobs: need {t}*{self.top_k} entries, got {len(self.top_ids)}/{len(self.top_logprobs)}"
            )


def encode_top_k(
    ids: np.ndarray, logprobs: np.ndarray, step: float = DEFAULT_LOGPROB_STEP
) -> tuple[np.ndarray, np.ndarray]:
    """Compact form of top-k candidates: (id gaps, uint8 logprob codes), both of shape (T, k).

    ``ids`` (T, k) int, -1 for padding; ``logprobs`` (T, k) float in nats, -inf for padding.
    Gaps are uint16 when they all fit, else uint32.
    """
    ids = np.asarray(ids, dtype=np.int64)
    logprobs = np.asarray(logprobs, dtype=np.float64)
    if ids.size and (ids.min() < -1 or ids.max() >= np.iinfo(np.uint32).max):
        raise ValueError(f"top_ids: ids must be in [-1, 2^32-1), got [{ids.min()}, {ids.max()}]")
    order = np.argsort(ids, axis=1, kind="stable")
    shifted = np.take_along_axis(ids, order, axis=1) + 1  # padding (-1) sorts first as 0
    gaps = np.diff(shifted, axis=1, prepend=0)
    codes = np.rint(-np.take_along_axis(logprobs, order, axis=1) / step)
    codes = np.clip(np.nan_to_num(codes, nan=255.0, posinf=255.0), 0, 255).astype(np.uint8)
    gap_type = np.uint16 if gaps.size == 0 or gaps.max() <= np.iinfo(np.uint16).max else np.uint32
    return gaps.astype(gap_type), codes


def decode_top_k(
    gaps: np.ndarray, codes: np.ndarray, step: float = DEFAULT_LOGPROB_STEP
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_top_k`: (ids int32 (T, k), logprobs float32 (T, k)), rank order.

    Each row is sorted by logprob, highest first (ties keep id order); padding is id -1 with
    logprob -inf.
    """
    ids = np.cumsum(gaps.astype(np.int64), axis=1) - 1
    logprobs = codes.astype(np.float32) * np.float32(-step)
    logprobs[ids < 0] = -np.inf
    order = np.argsort(codes, axis=1, kind="stable")
    rank_ids = np.take_along_axis(ids, order, axis=1).astype(np.int32)
    rank_lp = np.take_along_axis(logprobs, order, axis=1)
    # Padding has code 255 like clipped candidates but a lower id, so move it behind them.
    pad_last = np.argsort(rank_ids < 0, axis=1, kind="stable")
    return np.take_along_axis(rank_ids, pad_last, axis=1), np.take_along_axis(rank_lp, pad_last, axis=1)


def records_to_table(
    records: Iterable[SampleRecord], metadata: dict[str, Any] | None = None, *, step: float = DEFAULT_LOGPROB_STEP
) -> pa.Table:
    """Columnar Arrow table of ``records`` (top-k encoded compactly) with the shard metadata."""
    rows = list(records)
    for r in rows:
        r.validate()
    columns: dict[str, list[Any]] = {name: [getattr(r, name) for r in rows] for name, _ in _TEXT_COLUMNS}
    columns["token_logprobs"] = [np.asarray(v, dtype=np.float16) for v in columns["token_logprobs"]]
    gaps: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    for r in rows:
        t, k = len(r.token_ids), r.top_k
        g, c = encode_top_k(
            np.asarray(r.top_ids, dtype=np.int64).reshape(t, k),
            np.asarray(r.top_logprobs, dtype=np.float64).reshape(t, k),
            step,
        )
        gaps.append(g.reshape(-1))
        codes.append(c.reshape(-1))
    wide = any(g.dtype == np.uint32 for g in gaps)
    id_type = pa.uint32() if wide else pa.uint16()
    columns["top_ids"] = [g.astype(np.uint32 if wide else np.uint16) for g in gaps]
    columns["top_logprobs"] = codes
    shard_schema = schema(id_type)
    arrays = [pa.array(columns[f.name], type=f.type) for f in shard_schema]
    table = pa.Table.from_arrays(arrays, schema=shard_schema)
    meta = {
        **(metadata or {}),
        "schema_version": SCHEMA_VERSION,
        "top_encoding": TOP_ENCODING,
        "top_logprob_step": step,
    }
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})


def _write_table(table: pa.Table, where: str | io.BytesIO, compression: str) -> None:
    pq.write_table(
        table,
        where,
        compression=compression,
        compression_level=(
            {
                **{(f"{n}.list.element" if pa.types.is_list(t) else n): COMPRESSION_LEVEL for n, t in _TEXT_COLUMNS},
                "top_ids.list.element": TOP_COMPRESSION_LEVEL,
                "top_logprobs.list.element": TOP_COMPRESSION_LEVEL,
            }
            if compression == "zstd"
            else None
        ),
        # Dictionaries help repeated strings and the 256 logprob codes, not the id gaps.
        use_dictionary=["dataset", "split", "finish_reason", "top_logprobs.list.element"],
        column_encoding={"top_ids.list.element": "BYTE_STREAM_SPLIT"},
    )


def shard_bytes(
    records: Iterable[SampleRecord],
    metadata: dict[str, Any] | None = None,
    *,
    compression: str = "zstd",
    step: float = DEFAULT_LOGPROB_STEP,
) -> bytes:
    """The Parquet bytes of a shard (for object stores, where the upload itself is atomic)."""
    buffer = io.BytesIO()
    _write_table(records_to_table(records, metadata, step=step), buffer, compression)
    return buffer.getvalue()


def write_shard(
    path: str | os.PathLike[str],
    records: Iterable[SampleRecord],
    metadata: dict[str, Any] | None = None,
    *,
    compression: str = "zstd",
    step: float = DEFAULT_LOGPROB_STEP,
) -> Path:
    """Write one Parquet shard atomically (temp file + fsync + rename): never half a shard."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = records_to_table(records, metadata, step=step)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=path.parent)
    os.close(fd)
    try:
        _write_table(table, tmp, compression)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def shard_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``cotdistill`` metadata of a shard."""
    raw = pq.read_schema(path).metadata or {}
    return dict(json.loads(raw.get(METADATA_KEY, b"{}")))


@dataclass
class SampleTable:
    """Samples read back for training: text columns as lists, token data as flat arrays.

    With N sequences and ``T_total`` tokens: ``token_offsets`` has N+1 entries and sequence i's
    tokens are ``token_ids[token_offsets[i]:token_offsets[i+1]]``; ``top_ids`` and
    ``top_logprobs`` have shape (T_total, k) (k = 0 when no top-k was kept), each row sorted by
    logprob, highest first.
    """

    example_id: list[str]
    sample_index: np.ndarray  # int32 (N,)
    prompt: list[str]
    rationale: list[str]
    prediction: list[str | None]
    gold: list[str | None]
    correct: list[bool | None]
    token_ids: np.ndarray  # int32 (T_total,)
    token_offsets: np.ndarray  # int64 (N+1,)
    token_logprobs: np.ndarray  # float32 (T_total,)
    top_ids: np.ndarray  # int32 (T_total, k)
    top_logprobs: np.ndarray  # float32 (T_total, k)
    k: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.example_id)

    def tokens(self, i: int) -> slice:
        """The slice of the flat token arrays that belongs to sequence ``i``."""
        return slice(int(self.token_offsets[i]), int(self.token_offsets[i + 1]))


def _flat(column: pa.ChunkedArray | pa.Array, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Values and offsets of a list column without a Python loop."""
    combined = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(combined, pa.ChunkedArray):  # empty table
        combined = pa.array([], type=column.type)
    offsets = combined.offsets.to_numpy().astype(np.int64)
    values = combined.values.to_numpy(zero_copy_only=False).astype(dtype)
    start = int(offsets[0]) if len(offsets) else 0
    return values[start : int(offsets[-1]) if len(offsets) else 0], offsets - start


@dataclass
class _ShardArrays:
    table: pa.Table
    token_ids: np.ndarray
    offsets: np.ndarray
    token_logprobs: np.ndarray
    top_ids: np.ndarray
    top_logprobs: np.ndarray
    k: int


def _required_columns() -> list[str]:
    return [name for name, _ in _TEXT_COLUMNS] + ["top_ids", "top_logprobs"]


def shard_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a sample shard, from its footer alone; None when it is one.

    Cheap (no row is read), so a service can check every training input before it queues a run.
    """
    try:
        columns = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as err:  # not Parquet at all, or unreadable
        return f"not a Parquet sample shard ({err})"
    missing = [n for n in _required_columns() if n not in columns]
    return f"not a sample shard (missing columns {', '.join(missing)})" if missing else None


def _read_shard(path: str | os.PathLike[str] | BinaryIO) -> _ShardArrays:
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    missing = [n for n in _required_columns() if n not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a sample shard (missing columns {', '.join(missing)})")
    ks = {int(k) for k in table.column("top_k").to_pylist() if k}
    if len(ks) > 1:
        raise ValueError(f"top_k differs between samples ({sorted(ks)}); re-sample or filter to one k")
    k = ks.pop() if ks else 0
    token_ids, offsets = _flat(table.column("token_ids"), np.int32)
    n_tokens = len(token_ids)
    token_logprobs, _ = _flat(table.column("token_logprobs"), np.float32)
    if len(token_logprobs) != n_tokens:  # some samples came without logprobs
        token_logprobs = np.zeros(n_tokens, np.float32)
    if meta.get("top_encoding") == TOP_ENCODING:
        gaps, _ = _flat(table.column("top_ids"), np.uint32)
        codes, _ = _flat(table.column("top_logprobs"), np.uint8)
        top_ids, top_logprobs = decode_top_k(
            gaps.reshape(n_tokens, k), codes.reshape(n_tokens, k), float(meta["top_logprob_step"])
        )
    else:  # version 1: exact order, int32 ids, float16 logprobs
        ids, _ = _flat(table.column("top_ids"), np.int32)
        lps, _ = _flat(table.column("top_logprobs"), np.float32)
        top_ids, top_logprobs = ids.reshape(n_tokens, k), lps.reshape(n_tokens, k)
    return _ShardArrays(table, token_ids, offsets, token_logprobs, top_ids, top_logprobs, k)


def read_samples(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> SampleTable:
    """Read shards (files or directories of ``*.parquet``) into one :class:`SampleTable`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.parquet")) if p.is_dir() else [p])
    if not files:
        raise FileNotFoundError(f"no sample shards (*.parquet) under {', '.join(map(str, paths))}")
    shards = [_read_shard(f) for f in files]
    ks = {s.k for s in shards if s.k}
    if len(ks) > 1:
        raise ValueError(f"top_k differs between samples ({sorted(ks)}); re-sample or filter to one k")
    k = ks.pop() if ks else 0
    for s in shards:  # shards without top-k (k = 0) next to shards with it: zero-width rows
        if s.k != k:
            s.top_ids = np.full((len(s.token_ids), k), -1, np.int32)
            s.top_logprobs = np.full((len(s.token_ids), k), -np.inf, np.float32)
    table = pa.concat_tables(
        [s.table.select([name for name, _ in _TEXT_COLUMNS]) for s in shards], promote_options="permissive"
    )
    sizes = np.cumsum([0] + [len(s.token_ids) for s in shards])
    offsets = np.concatenate([[0]] + [s.offsets[1:] + base for s, base in zip(shards, sizes[:-1], strict=True)])
    return SampleTable(
        example_id=table.column("example_id").to_pylist(),
        sample_index=table.column("sample_index").to_numpy().astype(np.int32),
        prompt=table.column("prompt").to_pylist(),
        rationale=table.column("rationale").to_pylist(),
        prediction=table.column("prediction").to_pylist(),
        gold=table.column("gold").to_pylist(),
        correct=table.column("correct").to_pylist(),
        token_ids=np.concatenate([s.token_ids for s in shards]).astype(np.int32),
        token_offsets=offsets.astype(np.int64),
        token_logprobs=np.concatenate([s.token_logprobs for s in shards]).astype(np.float32),
        top_ids=np.concatenate([s.top_ids for s in shards]).astype(np.int32),
        top_logprobs=np.concatenate([s.top_logprobs for s in shards]).astype(np.float32),
        k=k,
        metadata=shard_metadata(files[0]),
    )


def read_records(path: str | os.PathLike[str] | BinaryIO) -> tuple[list[SampleRecord], dict[str, Any]]:
    """Every sample of one shard as a :class:`SampleRecord` (token data as numpy slices), with
    the shard metadata; for tools that rewrite shards (filtering), not for training."""
    shard = _read_shard(path)
    columns = {
        name: shard.table.column(name).to_pylist()
        for name, _ in _TEXT_COLUMNS
        if not name.startswith(("token_", "top_k"))
    }
    top_k = shard.table.column("top_k").to_pylist()
    records = []
    for i in range(shard.table.num_rows):
        sl = slice(int(shard.offsets[i]), int(shard.offsets[i + 1]))
        k = int(top_k[i] or 0)
        records.append(
            SampleRecord(
                **{name: values[i] for name, values in columns.items()},
                token_ids=shard.token_ids[sl],
                token_logprobs=shard.token_logprobs[sl],
                top_k=k,
                top_ids=shard.top_ids[sl].reshape(-1) if k else (),
                top_logprobs=shard.top_logprobs[sl].reshape(-1) if k else (),
            )
        )
    return records, json.loads((shard.table.schema.metadata or {}).get(METADATA_KEY, b"{}"))

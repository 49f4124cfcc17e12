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
top_ids           list<int32>         T*k candidate ids, row-major
top_logprobs      list<float16>       T*k candidate logprobs, row-major
================  ==================  =====================================================

Shard-level facts (teacher model, tokenizer hash, logprob mode, sampling parameters) live in the
Parquet key-value metadata under ``cotdistill`` as JSON, so every artifact says what made it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"cotdistill"
SCHEMA_VERSION = 1

SCHEMA = pa.schema(
    [
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
        ("top_ids", pa.list_(pa.int32())),
        ("top_logprobs", pa.list_(pa.float16())),
    ]
)


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
    token_ids: Sequence[int] = ()
    token_logprobs: Sequence[float] = ()
    top_k: int = 0
    top_ids: Sequence[int] = ()
    top_logprobs: Sequence[float] = ()

    def validate(self) -> None:
        """Check the shapes of the token columns; raises ValueError naming the field."""
        t = len(self.token_ids)
        if self.token_logprobs and len(self.token_logprobs) != t:
            raise ValueError(f"token_logprobs: {len(self.token_logprobs)} entries for {t} tokens")
        if len(self.top_ids) != t * self.top_k or len(self.top_logprobs) != t * self.top_k:
            raise ValueError(
                f"top_ids/top_logprobs: need {t}*{self.top_k} entries, got {len(self.top_ids)}/{len(self.top_logprobs)}"
            )


def records_to_table(records: Iterable[SampleRecord], metadata: dict[str, Any] | None = None) -> pa.Table:
    """Columnar Arrow table of ``records`` with the shard metadata attached."""
    rows = list(records)
    for r in rows:
        r.validate()
    columns: dict[str, list[Any]] = {name: [getattr(r, name) for r in rows] for name in SCHEMA.names}
    for name in ("token_logprobs", "top_logprobs"):
        columns[name] = [np.asarray(v, dtype=np.float16) for v in columns[name]]
    arrays = [pa.array(columns[f.name], type=f.type) for f in SCHEMA]
    table = pa.Table.from_arrays(arrays, schema=SCHEMA)
    meta = {"schema_version": SCHEMA_VERSION, **(metadata or {})}
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})


def write_shard(
    path: str | os.PathLike[str],
    records: Iterable[SampleRecord],
    metadata: dict[str, Any] | None = None,
    *,
    compression: str = "zstd",
) -> Path:
    """Write one Parquet shard atomically (temp file + rename): a reader never sees half a shard."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = records_to_table(records, metadata)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression=compression, use_dictionary=["dataset", "split", "finish_reason"])
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
    ``top_logprobs`` have shape (T_total, k) (k = 0 when no top-k was kept).
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


def _flat(column: pa.ChunkedArray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Values and offsets of a list column without a Python loop."""
    combined = column.combine_chunks()
    if isinstance(combined, pa.ChunkedArray):  # empty table
        combined = pa.array([], type=column.type)
    offsets = combined.offsets.to_numpy().astype(np.int64)
    values = combined.values.to_numpy(zero_copy_only=False).astype(dtype)
    start = int(offsets[0]) if len(offsets) else 0
    return values[start : int(offsets[-1]) if len(offsets) else 0], offsets - start


def read_samples(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> SampleTable:
    """Read shards (files or directories of ``*.parquet``) into one :class:`SampleTable`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.parquet")) if p.is_dir() else [p])
    if not files:
        raise FileNotFoundError(f"no sample shards (*.parquet) under {', '.join(map(str, paths))}")
    tables = [pq.read_table(f, schema=SCHEMA) for f in files]
    table = pa.concat_tables(tables)
    ks = {int(k) for k in table.column("top_k").to_pylist() if k}
    if len(ks) > 1:
        raise ValueError(f"top_k differs between samples ({sorted(ks)}); re-sample or filter to one k")
    k = ks.pop() if ks else 0
    token_ids, offsets = _flat(table.column("token_ids"), np.int32)
    token_logprobs, _ = _flat(table.column("token_logprobs"), np.float32)
    top_ids, _ = _flat(table.column("top_ids"), np.int32)
    top_logprobs, _ = _flat(table.column("top_logprobs"), np.float32)
    n_tokens = len(token_ids)
    return SampleTable(
        example_id=table.column("example_id").to_pylist(),
        sample_index=table.column("sample_index").to_numpy().astype(np.int32),
        prompt=table.column("prompt").to_pylist(),
        rationale=table.column("rationale").to_pylist(),
        prediction=table.column("prediction").to_pylist(),
        gold=table.column("gold").to_pylist(),
        correct=table.column("correct").to_pylist(),
        token_ids=token_ids,
        token_offsets=offsets,
        token_logprobs=token_logprobs if len(token_logprobs) == n_tokens else np.zeros(n_tokens, np.float32),
        top_ids=top_ids.reshape(n_tokens, k) if k else np.zeros((n_tokens, 0), np.int32),
        top_logprobs=top_logprobs.reshape(n_tokens, k) if k else np.zeros((n_tokens, 0), np.float32),
        k=k,
        metadata=shard_metadata(files[0]),
    )

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
top_mass          list<int16>         T: probability mass of each token's k candidates
top_vocab         list<int32>         the shard's candidate vocabulary (all of it in row 0)
================  ==================  =====================================================

Compact top-k encoding (schema version 3, ``top_encoding = "vocab-set/rel-grid"``), 1.6-1.7
bytes per (id, logprob) entry on a 152k-vocabulary teacher instead of 6 (int32 + float16) or
2.1 (schema 2); see ``bench/bench_storage_real.py`` and docs/real-models.md:

* ``top_vocab``: every candidate id of the shard once, most frequent first (grouped by
  ``floor(log2(count))``, ascending ids within a group, so the column delta-codes well). A
  token's candidates become indices into it, stored as a *set*: sorted, shifted by one (padding
  id -1 becomes 0) and gap-coded. Frequent candidates have small indices, so the gaps are small
  (uint16 when every gap fits, else uint32; byte-stream-split so zstd sees each byte plane).
* ``top_logprobs``: in that same order, how far each candidate lies below the token's best one,
  ``r = best - logprob``, rounded to the nearest level of a grid that is fine where the mass is
  and coarse where it is not: 1/16 nat up to 4 nats, then 1/8, 1/4, 1/2 and 1 nat steps from
  4, 8, 12 and 16 nats (``top_logprob_grid`` in the metadata; 255 means -inf: absent).
* ``top_mass``: ``logit(sum of the k probabilities)`` in 1/64-nat steps. The reader scales the
  decoded candidates so they sum to this mass, so ``1 - sum`` (the trainer's tail bucket) stays
  right; values alone at a few percent precision each made the tail of a confident token noise.
  A mass of 1 or more (k = vocabulary, or candidates that are no distribution) comes back as 1.

The KD loss moves by ~6e-5 on real Qwen2.5-Coder-0.5B shards in both ``renormalize`` and
``tail_bucket`` modes (schema 2: 4e-7 and 8.6e-3). Readers undo all of it and sort each token's
candidates by logprob, highest first, so the contract of :class:`SampleTable` is unchanged.

Version 2 shards (``sorted-gap/q8``: id-sorted candidates as id gaps, logprobs as uint8 in
1/16-nat steps) and version 1 shards (int32 ids, float16 logprobs, in rank order) are still read.

Shard-level facts (teacher model, tokenizer hash, logprob mode, sampling parameters) live in the
Parquet key-value metadata under ``cotdistill`` as JSON, so every artifact says what made it;
:class:`ShardMetadata` is their typed form (readers never dig in the JSON).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MAX_TOP_K: Final = 20
"""The most teacher candidates (logprobs) kept per token, end to end: what a teacher replica
returns at most (``Info.max_top_k``), what a request may ask for (``top_k_logprobs``), what a
shard stores and what KD and on-policy steps read (``OnPolicySpec.top_k``). OpenAI-compatible
APIs cap ``top_logprobs`` at 20 as well."""
METADATA_KEY = b"cotdistill"
SCHEMA_VERSION = 3
TOP_ENCODING = "vocab-set/rel-grid"
TOP_ENCODING_V2 = "sorted-gap/q8"
LOGPROB_GRID: tuple[tuple[float, float], ...] = ((0.0, 1 / 16), (4.0, 1 / 8), (8.0, 1 / 4), (12.0, 1 / 2), (16.0, 1.0))
"""(from, step) in nats below a token's best candidate: 120 levels up to 16 nats, then 1 nat steps."""
MASS_STEP = 1 / 64
"""Step of ``logit(top-k mass)``: the mass and the tail ``1 - mass`` both within 0.8% relative."""
ABSENT_CODE = 255
COMPRESSION_LEVEL = 9
TOP_COMPRESSION_LEVEL = 19
"""zstd level of the top-k columns: ~8% smaller than level 9, still fast at shard sizes."""
TOP_COLUMNS = ("top_ids", "top_logprobs", "top_mass", "top_vocab")
_ENCODING_KEYS = ("schema_version", "top_encoding", "top_logprob_step", "top_logprob_grid", "top_mass_step")

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
    """The shard schema; ``id_type`` is the type of the top-k index gaps (uint16 or uint32)."""
    return pa.schema(
        [
            *_TEXT_COLUMNS,
            ("top_ids", pa.list_(id_type)),
            ("top_logprobs", pa.list_(pa.uint8())),
            ("top_mass", pa.list_(pa.int16())),
            ("top_vocab", pa.list_(pa.int32())),
        ]
    )


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


@dataclass(frozen=True)
class TokenizerFacts:
    """The teacher's tokenizer as its ``Info`` describes it (``common.proto`` ``TokenizerInfo``)."""

    name: str = ""
    vocab_size: int = 0  # the model's embedding rows (may exceed the tokenizer's length)
    tokenizer_vocab_size: int = 0
    content_hash: str = ""  # TokenizerInfo.content_hash: equal hashes mean the same token ids
    chat_template: str = ""


@dataclass(frozen=True)
class TeacherFacts:
    """What a teacher replica serves (its ``Info``), as every shard and sampling manifest records it."""

    model_id: str = ""
    backend: str = ""
    version: str = ""
    max_top_k: int = 0
    context_length: int = 0
    scores_candidates: bool = False
    tokenizer: TokenizerFacts = field(default_factory=TokenizerFacts)

    @classmethod
    def from_info(cls, info: Any) -> TeacherFacts:
        """From a ``teacher_pb2.InfoResponse``: the fields have the proto's names."""
        facts = {f.name: getattr(info, f.name) for f in fields(cls) if f.name != "tokenizer"}
        tokenizer = TokenizerFacts(**{f.name: getattr(info.tokenizer, f.name) for f in fields(TokenizerFacts)})
        return cls(**facts, tokenizer=tokenizer)

    @classmethod
    def from_dict(cls, data: Any) -> TeacherFacts:
        """From the JSON a shard or manifest holds; keys it does not know are ignored."""
        if not isinstance(data, Mapping):
            return cls()
        known = _known_fields(cls, data, exclude=("tokenizer",))
        tokenizer = data.get("tokenizer")
        tok = TokenizerFacts(**_known_fields(TokenizerFacts, tokenizer)) if isinstance(tokenizer, Mapping) else None
        return cls(**known, tokenizer=tok or TokenizerFacts())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _known_fields(cls: type, data: Mapping[str, Any], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    names = {f.name for f in fields(cls)} - set(exclude)
    return {k: v for k, v in data.items() if k in names and v is not None}


@dataclass
class ShardMetadata:
    """A shard's ``cotdistill`` key-value metadata: what made its samples.

    Stored as JSON under :data:`METADATA_KEY`. Each fact is stored once: the tokenizer hash is
    ``teacher.tokenizer.content_hash`` (:attr:`tokenizer_hash`), the model ``teacher.model_id``;
    shards written before carried both a second time at the top level (``tokenizer_hash``,
    ``teacher_model``), which :meth:`from_dict` still reads.
    """

    teacher: TeacherFacts = field(default_factory=TeacherFacts)
    job: dict[str, Any] = field(default_factory=dict)  # the sampling/scoring job's identity
    logprob_mode: str = ""  # "raw" or "processed": top-k logprobs before or after temperature
    prompt_template: str = ""  # "chat" or "raw": how the teacher's prompts were rendered
    unit_id: str = ""  # the work unit a sample shard holds ("" in filtered shards)
    unit_index: int = -1
    replica: str = ""
    attempt: int = 0
    filter: dict[str, Any] | None = None  # the filter's settings, in filtered shards
    schema_version: int = 1  # the shard schema (1 when the key is absent)
    extra: dict[str, Any] = field(default_factory=dict)  # other keys (the top-k encoding's, newer ones), kept

    @property
    def tokenizer_hash(self) -> str:
        """The teacher tokenizer's content hash ("" when unknown)."""
        return self.teacher.tokenizer.content_hash

    def without_unit(self, **changes: Any) -> ShardMetadata:
        """A copy for a derived shard (filtered, rewritten): no work unit, ``changes`` applied."""
        return replace(self, unit_id="", unit_index=-1, replica="", attempt=0, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ShardMetadata:
        rest = dict(data or {})
        teacher = TeacherFacts.from_dict(rest.pop("teacher", None))
        old_hash, old_model = str(rest.pop("tokenizer_hash", "") or ""), str(rest.pop("teacher_model", "") or "")
        if old_hash and not teacher.tokenizer.content_hash:
            teacher = replace(teacher, tokenizer=replace(teacher.tokenizer, content_hash=old_hash))
        if old_model and not teacher.model_id:
            teacher = replace(teacher, model_id=old_model)
        typed = {f.name for f in fields(cls)} - {"teacher", "extra"}
        values = {name: rest.pop(name) for name in typed if rest.get(name) is not None}
        return cls(teacher=teacher, **values, extra=rest)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; fields at their defaults are left out (a derived shard names no unit)."""
        defaults = ShardMetadata()
        out: dict[str, Any] = {"teacher": self.teacher.to_dict()}
        for f in fields(self):
            if f.name not in ("teacher", "extra") and getattr(self, f.name) != getattr(defaults, f.name):
                out[f.name] = getattr(self, f.name)
        return {**self.extra, **out}


MetadataLike = ShardMetadata | Mapping[str, Any] | None
"""What the writers take: typed metadata, or its JSON form (converted, old keys included)."""


def _as_metadata(metadata: MetadataLike) -> ShardMetadata:
    return metadata if isinstance(metadata, ShardMetadata) else ShardMetadata.from_dict(metadata)


def grid_levels(grid: Sequence[Sequence[float]] = LOGPROB_GRID) -> np.ndarray:
    """The 255 reconstruction levels (nats below the best candidate) of a logprob grid."""
    levels: list[float] = []
    for i, (start, step) in enumerate(grid):
        end = grid[i + 1][0] if i + 1 < len(grid) else np.inf
        count = round((end - start) / step) if np.isfinite(end) else ABSENT_CODE
        levels.extend(start + step * np.arange(count))
    return np.asarray(levels[:ABSENT_CODE], dtype=np.float64)


def shard_vocab(ids: np.ndarray) -> np.ndarray:
    """The shard's candidate vocabulary (int32): distinct ids >= 0, most frequent first.

    Ids are grouped by ``floor(log2(count))`` (frequent groups first) and ascending within a
    group: nearly frequency order, so the frequent candidates get small indices, while the column
    itself is runs of increasing ids that delta-code to a few bits each.
    """
    ids = np.asarray(ids).reshape(-1)
    values, counts = np.unique(ids[ids >= 0], return_counts=True)
    order = np.lexsort((values, -np.floor(np.log2(counts))))
    return values[order].astype(np.int32)


@dataclass(frozen=True)
class TopKColumns:
    """Schema-3 top-k columns of T tokens x k candidates (see the module docstring)."""

    gaps: np.ndarray  # (T, k) uint16 | uint32: gaps of the sorted (vocabulary index + 1)
    codes: np.ndarray  # (T, k) uint8: grid code of (best - logprob), same order; 255 = -inf
    mass: np.ndarray  # (T,) int16: logit(top-k probability mass) / MASS_STEP


def encode_top_k(ids: np.ndarray, logprobs: np.ndarray, vocab: np.ndarray) -> TopKColumns:
    """Compact form of top-k candidates against the shard vocabulary ``vocab``.

    ``ids`` (T, k) int, -1 for padding, every other id in ``vocab``; ``logprobs`` (T, k) float in
    nats, -inf (or NaN) for padding and absent candidates. Any candidate order is accepted.
    """
    ids = np.asarray(ids, dtype=np.int64)
    logprobs = np.asarray(logprobs, dtype=np.float64)
    vocab = np.asarray(vocab, dtype=np.int64)
    t = ids.shape[0]
    # Vocabulary index + 1 of every candidate (0 = padding), through the sorted vocabulary.
    by_id = np.argsort(vocab, kind="stable")
    slot = np.clip(np.searchsorted(vocab[by_id], ids), 0, max(len(vocab) - 1, 0))
    known = (ids < 0) | ((vocab[by_id][slot] == ids) if len(vocab) else False)
    if not np.all(known):
        raise ValueError(f"top_ids: id {ids[~known][0]} is not in the shard vocabulary")
    index = np.where(ids < 0, 0, (by_id[slot] + 1) if len(vocab) else 0)
    order = np.argsort(index, axis=1, kind="stable")
    gaps = np.diff(np.take_along_axis(index, order, axis=1), axis=1, prepend=0)
    gap_type = np.uint16 if gaps.size == 0 or gaps.max() <= np.iinfo(np.uint16).max else np.uint32

    present = np.isfinite(logprobs) & (ids >= 0)
    kept = np.where(present, logprobs, -np.inf)
    best = kept.max(axis=1, keepdims=True) if kept.size else np.full((t, 1), -np.inf)
    levels = grid_levels()
    codes = np.searchsorted((levels[1:] + levels[:-1]) / 2, np.where(present, best - kept, 0.0))
    codes = np.where(present, codes, ABSENT_CODE).astype(np.uint8)

    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.isfinite(best), best, 0.0)  # a row's best is its largest term: no overflow
        log_mass = (shift + np.log(np.exp(kept - shift).sum(axis=1, keepdims=True)))[:, 0]
        # logit(m) = log m - log(1 - m), from log m without cancellation near m = 1.
        logit = log_mass - np.log(-np.expm1(np.minimum(log_mass, -1e-300)))
    bound = np.iinfo(np.int16).max
    mass = np.clip(np.rint(np.nan_to_num(logit, nan=-bound, neginf=-bound) / MASS_STEP), -bound, bound)
    return TopKColumns(gaps.astype(gap_type), np.take_along_axis(codes, order, axis=1), mass.astype(np.int16))


def decode_top_k(
    columns: TopKColumns,
    vocab: np.ndarray,
    grid: Sequence[Sequence[float]] = LOGPROB_GRID,
    mass_step: float = MASS_STEP,
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_top_k`: (ids int32 (T, k), logprobs float32 (T, k)), rank order.

    Each row is sorted by logprob, highest first (ties in stored order); padding is id -1 with
    logprob -inf. The candidates are scaled to the stored top-k mass. ``grid`` and
    ``mass_step`` are the ones the shard was written with (its metadata).
    """
    index = np.cumsum(columns.gaps.astype(np.int64), axis=1)
    lookup = np.concatenate([[-1], np.asarray(vocab, dtype=np.int64)])
    ids = lookup[np.clip(index, 0, len(lookup) - 1)]
    present = columns.codes != ABSENT_CODE
    shape = np.where(present, -np.append(grid_levels(grid), 0.0)[columns.codes], -np.inf)
    logit = columns.mass.astype(np.float64)[:, None] * mass_step
    log_mass = -np.logaddexp(0.0, -logit)  # log sigmoid
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.log(np.exp(shape).sum(axis=1, keepdims=True))  # the best candidate is 0: no overflow
        logprobs = np.where(present, shape - norm + log_mass, -np.inf).astype(np.float32)
    order = np.argsort(-logprobs, axis=1, kind="stable")
    return (
        np.take_along_axis(ids, order, axis=1).astype(np.int32),
        np.take_along_axis(logprobs, order, axis=1),
    )


def _decode_top_k_v2(gaps: np.ndarray, codes: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Schema-2 columns (id-sorted id gaps, uint8 ``-logprob/step``) -> rank-order ids, logprobs."""
    ids = np.cumsum(gaps.astype(np.int64), axis=1) - 1
    logprobs = codes.astype(np.float32) * np.float32(-step)
    logprobs[ids < 0] = -np.inf
    order = np.argsort(codes, axis=1, kind="stable")
    rank_ids = np.take_along_axis(ids, order, axis=1).astype(np.int32)
    rank_lp = np.take_along_axis(logprobs, order, axis=1)
    # Padding has code 255 like clipped candidates but a lower id, so move it behind them.
    pad_last = np.argsort(rank_ids < 0, axis=1, kind="stable")
    return np.take_along_axis(rank_ids, pad_last, axis=1), np.take_along_axis(rank_lp, pad_last, axis=1)


def records_to_table(records: Iterable[SampleRecord], metadata: MetadataLike = None) -> pa.Table:
    """Columnar Arrow table of ``records`` (top-k encoded compactly) with the shard metadata."""
    rows = list(records)
    for r in rows:
        r.validate()
    columns: dict[str, list[Any]] = {name: [getattr(r, name) for r in rows] for name, _ in _TEXT_COLUMNS}
    columns["token_logprobs"] = [np.asarray(v, dtype=np.float16) for v in columns["token_logprobs"]]
    top_ids = [np.asarray(r.top_ids, dtype=np.int64).reshape(len(r.token_ids), r.top_k) for r in rows]
    vocab = shard_vocab(np.concatenate([i.reshape(-1) for i in top_ids])) if rows else np.zeros(0, np.int32)
    encoded = [
        encode_top_k(ids, np.asarray(r.top_logprobs, dtype=np.float64).reshape(ids.shape), vocab)
        for ids, r in zip(top_ids, rows, strict=True)
    ]
    wide = any(e.gaps.dtype == np.uint32 for e in encoded)
    columns["top_ids"] = [e.gaps.reshape(-1).astype(np.uint32 if wide else np.uint16) for e in encoded]
    columns["top_logprobs"] = [e.codes.reshape(-1) for e in encoded]
    columns["top_mass"] = [e.mass for e in encoded]
    columns["top_vocab"] = [vocab if i == 0 else vocab[:0] for i in range(len(rows))]
    shard_schema = schema(pa.uint32() if wide else pa.uint16())
    arrays = [pa.array(columns[f.name], type=f.type) for f in shard_schema]
    table = pa.Table.from_arrays(arrays, schema=shard_schema)
    meta = {
        **{k: v for k, v in _as_metadata(metadata).to_dict().items() if k not in _ENCODING_KEYS},  # an old shard's
        "schema_version": SCHEMA_VERSION,
        "top_encoding": TOP_ENCODING,
        "top_logprob_grid": [list(level) for level in LOGPROB_GRID],
        "top_mass_step": MASS_STEP,
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
                **{f"{n}.list.element": TOP_COMPRESSION_LEVEL for n in TOP_COLUMNS},
            }
            if compression == "zstd"
            else None
        ),
        # Dictionaries help repeated strings and the 255 logprob codes, not the numeric columns.
        use_dictionary=["dataset", "split", "finish_reason", "top_logprobs.list.element"],
        column_encoding={
            "top_ids.list.element": "BYTE_STREAM_SPLIT",
            "top_mass.list.element": "BYTE_STREAM_SPLIT",
            "top_vocab.list.element": "DELTA_BINARY_PACKED",
        },
    )


def shard_bytes(records: Iterable[SampleRecord], metadata: MetadataLike = None, *, compression: str = "zstd") -> bytes:
    """The Parquet bytes of a shard (for object stores, where the upload itself is atomic)."""
    buffer = io.BytesIO()
    _write_table(records_to_table(records, metadata), buffer, compression)
    return buffer.getvalue()


def write_shard(
    path: str | os.PathLike[str],
    records: Iterable[SampleRecord],
    metadata: MetadataLike = None,
    *,
    compression: str = "zstd",
) -> Path:
    """Write one Parquet shard atomically (temp file + fsync + rename): never half a shard."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = records_to_table(records, metadata)
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


def shard_metadata(path: str | os.PathLike[str]) -> ShardMetadata:
    """The ``cotdistill`` metadata of a shard."""
    return _metadata_of(pq.read_schema(path))


def _metadata_of(schema: pa.Schema) -> ShardMetadata:
    return ShardMetadata.from_dict(json.loads((schema.metadata or {}).get(METADATA_KEY, b"{}")))


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
    metadata: ShardMetadata = field(default_factory=ShardMetadata)

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


@dataclass(frozen=True)
class ShardSummary:
    """What a shard's footer and its ``top_k`` column say, without reading any token data."""

    metadata: ShardMetadata
    top_k: int  # candidates per token of the first sample that kept any (0: none did)


def inspect_shard(path: str | os.PathLike[str]) -> ShardSummary:
    """The metadata and top-k width of one shard, opening it once and reading one int column.

    Cheap, so a service can check every training input before it queues a run. Raises
    ValueError saying why ``path`` is not a sample shard.
    """
    try:
        parquet = pq.ParquetFile(path)
        columns = parquet.schema_arrow.names
    except (OSError, pa.ArrowException) as err:  # not Parquet at all, or unreadable
        raise ValueError(f"not a Parquet sample shard ({err})") from None
    missing = [n for n in _required_columns() if n not in columns]
    if missing:
        raise ValueError(f"not a sample shard (missing columns {', '.join(missing)})")
    ks = [k for k in parquet.read(columns=["top_k"]).column("top_k").to_pylist() if k]
    return ShardSummary(_metadata_of(parquet.schema_arrow), int(ks[0]) if ks else 0)


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
    encoding = meta.get("top_encoding")
    if encoding == TOP_ENCODING:
        gaps, _ = _flat(table.column("top_ids"), np.uint32)
        codes, _ = _flat(table.column("top_logprobs"), np.uint8)
        mass, _ = _flat(table.column("top_mass"), np.int16)
        vocab, _ = _flat(table.column("top_vocab"), np.int32)
        columns = TopKColumns(gaps.reshape(n_tokens, k), codes.reshape(n_tokens, k), mass)
        top_ids, top_logprobs = decode_top_k(columns, vocab, meta["top_logprob_grid"], float(meta["top_mass_step"]))
    elif encoding == TOP_ENCODING_V2:
        gaps, _ = _flat(table.column("top_ids"), np.uint32)
        codes, _ = _flat(table.column("top_logprobs"), np.uint8)
        top_ids, top_logprobs = _decode_top_k_v2(
            gaps.reshape(n_tokens, k), codes.reshape(n_tokens, k), float(meta["top_logprob_step"])
        )
    elif encoding is not None:
        raise ValueError(f"{path}: unknown top-k encoding {encoding!r} (written by a newer cotdistill?)")
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


def read_records(path: str | os.PathLike[str] | BinaryIO) -> tuple[list[SampleRecord], ShardMetadata]:
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
    return records, _metadata_of(shard.table.schema)

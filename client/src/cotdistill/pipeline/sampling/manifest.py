"""``samples/manifest.json``: what a sampling job is, which teacher served it, which units are done.

The manifest is rewritten atomically after each unit's shard is in place, so it never lists a
unit whose shard is missing. A crash between the shard write and the manifest update leaves a
complete shard the manifest does not know yet; :func:`reconcile` adopts it on the next start
(checking its unit id and row count) instead of sampling it again.
"""

from __future__ import annotations

import json
import posixpath
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow.parquet as pq

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import ConfigError
from cotdistill.common.samples import METADATA_KEY, ShardMetadata, TeacherFacts
from cotdistill.pipeline.sampling.units import JobIdentity, WorkUnit

SAMPLES_DIR = "samples"
MANIFEST = "manifest.json"
STALE_DIR = "stale"
_SHARD = re.compile(r"^part-(\d{5})-([0-9a-f]{20})\.parquet$")


@dataclass
class UnitRecord:
    """A completed unit: where its shard is and what it holds."""

    unit_id: str
    index: int
    shard: str
    examples: int
    samples: int
    tokens: int
    replica: str = ""
    attempts: int = 1
    completed_at: float = field(default_factory=time.time)
    adopted: bool = False  # found on disk after a crash rather than recorded when written


@dataclass
class Manifest:
    """The job's identity, its teacher, and its completed units (by unit id)."""

    job: dict[str, Any]
    fingerprint: str
    teacher: TeacherFacts | None = None
    units_total: int = 0
    completed: dict[str, UnitRecord] = field(default_factory=dict)
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def new(cls, spec: JobIdentity, teacher: TeacherFacts, units_total: int) -> Manifest:
        return cls(job=spec.as_dict(), fingerprint=spec.fingerprint(), teacher=teacher, units_total=units_total)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["completed"] = {uid: asdict(rec) for uid, rec in sorted(self.completed.items())}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        completed = {uid: UnitRecord(**rec) for uid, rec in data.get("completed", {}).items()}
        return cls(
            job=data["job"],
            fingerprint=data["fingerprint"],
            teacher=TeacherFacts.from_dict(data["teacher"]) if data.get("teacher") else None,
            units_total=int(data.get("units_total", 0)),
            completed=completed,
            updated_at=float(data.get("updated_at", 0.0)),
        )

    @property
    def samples(self) -> int:
        return sum(r.samples for r in self.completed.values())


def load_manifest(store: ArtifactStore) -> Manifest | None:
    """The manifest under ``samples/``, or None when the job never started."""
    if not store.exists(SAMPLES_DIR, MANIFEST):
        return None
    try:
        return Manifest.from_json(store.read_json(SAMPLES_DIR, MANIFEST))
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(
            f"unreadable sampling manifest ({err}); move it away to rebuild it from the shards",
            source=store.uri(SAMPLES_DIR, MANIFEST),
        ) from None


def save_manifest(store: ArtifactStore, manifest: Manifest) -> None:
    manifest.updated_at = time.time()
    store.write_json(manifest.to_json(), SAMPLES_DIR, MANIFEST)


def check_compatible(manifest: Manifest, spec: JobIdentity, teacher: TeacherFacts) -> None:
    """Refuse to resume another job's samples or mix two teachers in one sample set."""
    if manifest.fingerprint != spec.fingerprint():
        old, new = manifest.job, spec.as_dict()
        changed = sorted(_diff(old, new))
        raise ConfigError(
            f"{SAMPLES_DIR}/ holds samples of a different job (changed: {', '.join(changed) or 'format'}); "
            "use another run name, or delete that directory to sample again"
        )
    before = manifest.teacher or TeacherFacts()
    old_hash, new_hash = before.tokenizer.content_hash, teacher.tokenizer.content_hash
    if manifest.completed and old_hash and new_hash and old_hash != new_hash:
        raise ConfigError(
            f"the teacher's tokenizer changed since these samples were taken ({old_hash[:12]} -> {new_hash[:12]}, "
            f"model {before.model_id!r} -> {teacher.model_id!r}); "
            "samples of two teachers must not be mixed: use another run name"
        )


def _diff(old: Any, new: Any, prefix: str = "") -> set[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: set[str] = set()
        for key in set(old) | set(new):
            out |= _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return set() if old == new else {prefix.rstrip(".")}


@dataclass
class Reconciliation:
    """What :func:`reconcile` changed, for the log and the tests."""

    adopted: list[str] = field(default_factory=list)  # complete shards the manifest did not list
    missing: list[str] = field(default_factory=list)  # listed units whose shard is gone (redone)
    stale: list[str] = field(default_factory=list)  # shards of units not in the plan (moved aside)
    temp_removed: int = 0  # half-written temporary files of a killed writer
    foreign: list[str] = field(default_factory=list)  # other Parquet files (imports), left alone


def reconcile(store: ArtifactStore, manifest: Manifest, plan: list[WorkUnit], num_samples: int) -> Reconciliation:
    """Make ``manifest.completed`` match the shards present, in place; returns what changed."""
    report = Reconciliation()
    by_id = {u.unit_id: u for u in plan}
    present: dict[str, str] = {}
    for rel in store.list(SAMPLES_DIR, pattern="*.parquet"):
        name = posixpath.basename(rel)
        if name.startswith(".tmp-"):
            store.fs.rm(store.path(rel))
            report.temp_removed += 1
            continue
        match = _SHARD.match(name)
        if match is None:  # not a unit shard (e.g. `cotdistill data import` output): leave it
            report.foreign.append(name)
            continue
        unit = by_id.get(match.group(2))
        if unit is None or unit.shard_name != name:
            _move_aside(store, name)
            report.stale.append(name)
            manifest.completed.pop(match.group(2), None)
            continue
        present[unit.unit_id] = name
    for unit_id in list(manifest.completed):
        if unit_id not in present:
            del manifest.completed[unit_id]
            report.missing.append(unit_id)
    for unit_id, name in sorted(present.items()):
        if unit_id in manifest.completed:
            continue
        unit = by_id[unit_id]
        record = _inspect_shard(store, unit, name, num_samples)
        if record is None:  # not this unit's complete output: sample it again
            _move_aside(store, name)
            report.stale.append(name)
        else:
            manifest.completed[unit_id] = record
            report.adopted.append(unit_id)
    return report


def _inspect_shard(store: ArtifactStore, unit: WorkUnit, name: str, num_samples: int) -> UnitRecord | None:
    with store.fs.open(store.path(SAMPLES_DIR, name), "rb") as handle:
        parquet = pq.ParquetFile(handle)
        meta = ShardMetadata.from_dict(json.loads((parquet.schema_arrow.metadata or {}).get(METADATA_KEY, b"{}")))
        rows = parquet.metadata.num_rows
        tokens = 0
        if rows:
            lengths = parquet.read(columns=["token_ids"]).column("token_ids").combine_chunks().value_lengths()
            tokens = int(sum(lengths.to_pylist()))
    if meta.unit_id != unit.unit_id or rows != unit.expected_results(num_samples):
        return None
    return UnitRecord(
        unit_id=unit.unit_id,
        index=unit.index,
        shard=name,
        examples=len(unit.examples),
        samples=rows,
        tokens=tokens,
        replica=meta.replica,
        attempts=meta.attempt or 1,
        adopted=True,
    )


def _move_aside(store: ArtifactStore, name: str) -> None:
    """Keep a shard that does not belong to this plan out of the sample set without deleting it."""
    store.makedirs(SAMPLES_DIR, STALE_DIR)
    store.fs.mv(store.path(SAMPLES_DIR, name), store.path(SAMPLES_DIR, STALE_DIR, f"{int(time.time())}-{name}"))

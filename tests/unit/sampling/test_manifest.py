"""Manifest reconciliation: the shards on disk are the truth, the manifest catches up."""

from __future__ import annotations

from pathlib import Path

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.samples import SampleRecord, TeacherFacts, TokenizerFacts, write_shard
from cotdistill.pipeline.sampling.manifest import (
    Manifest,
    UnitRecord,
    load_manifest,
    reconcile,
    save_manifest,
)
from cotdistill.pipeline.sampling.units import ExampleRef, JobSpec, UnitParams, WorkUnit, plan_units

D = 2
SPEC = JobSpec("toy", "train", UnitParams(num_samples=D, temperature=0.7, top_p=1, max_tokens=8, top_k_logprobs=0), 2)
UNITS = plan_units([ExampleRef(f"e{i}", f"Q{i}") for i in range(6)], SPEC)


def write_unit(root: Path, unit: WorkUnit, *, rows: int | None = None, unit_id: str | None = None) -> None:
    records = [
        SampleRecord(example_id=e.id, sample_index=s, prompt=e.prompt, rationale="r", token_ids=[1, 2, 3])
        for e in unit.examples
        for s in range(D)
    ][: rows if rows is not None else None]
    write_shard(root / "samples" / unit.shard_name, records, {"unit_id": unit_id or unit.unit_id, "replica": "r1"})


def record(unit: WorkUnit) -> UnitRecord:
    return UnitRecord(unit.unit_id, unit.index, unit.shard_name, len(unit.examples), len(unit.examples) * D, 0)


def test_complete_shard_missing_from_the_manifest_is_adopted_not_redone(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    manifest = Manifest.new(SPEC, TeacherFacts(model_id="t"), len(UNITS))
    write_unit(tmp_path, UNITS[0])
    manifest.completed[UNITS[0].unit_id] = record(UNITS[0])
    write_unit(tmp_path, UNITS[1])  # the driver died after this shard, before the manifest update
    report = reconcile(store, manifest, UNITS, D)
    assert report.adopted == [UNITS[1].unit_id]
    adopted = manifest.completed[UNITS[1].unit_id]
    assert adopted.adopted and adopted.samples == 4 and adopted.tokens == 12 and adopted.replica == "r1"


def test_listed_unit_without_its_shard_is_redone(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    manifest = Manifest.new(SPEC, TeacherFacts(), len(UNITS))
    manifest.completed[UNITS[2].unit_id] = record(UNITS[2])
    (tmp_path / "samples").mkdir()
    report = reconcile(store, manifest, UNITS, D)
    assert report.missing == [UNITS[2].unit_id] and not manifest.completed


def test_foreign_incomplete_and_temporary_files_are_moved_aside(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    manifest = Manifest.new(SPEC, TeacherFacts(), len(UNITS))
    write_unit(tmp_path, UNITS[0], rows=3)  # fewer rows than the unit must have
    write_unit(tmp_path, UNITS[1], unit_id="0" * 20)  # metadata of another unit
    (tmp_path / "samples" / "part-00009-0123456789abcdef0123.parquet").write_bytes(b"x")  # not in the plan
    (tmp_path / "samples" / ".tmp-abc.parquet").write_bytes(b"half")
    (tmp_path / "samples" / "part-00000.parquet").write_bytes(b"imported")  # `cotdistill data import`
    report = reconcile(store, manifest, UNITS, D)
    assert not manifest.completed and not report.adopted
    assert len(report.stale) == 3 and report.temp_removed == 1 and report.foreign == ["part-00000.parquet"]
    assert sorted(p.name for p in (tmp_path / "samples").glob("*.parquet")) == ["part-00000.parquet"]
    assert len(list((tmp_path / "samples" / "stale").iterdir())) == 3


def test_manifest_round_trips(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    manifest = Manifest.new(SPEC, TeacherFacts(model_id="t", tokenizer=TokenizerFacts(content_hash="h")), 3)
    manifest.completed[UNITS[0].unit_id] = record(UNITS[0])
    save_manifest(store, manifest)
    loaded = load_manifest(store)
    assert loaded is not None
    assert loaded.completed == manifest.completed and loaded.fingerprint == SPEC.fingerprint()
    assert loaded.teacher is not None and loaded.teacher.tokenizer.content_hash == "h" and loaded.samples == 4

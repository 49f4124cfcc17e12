"""The sampling job against in-process fake teachers: exactly once, retries elsewhere, resume."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import ConfigError, CotdistillError
from cotdistill.common.retry import RetryPolicy
from cotdistill.common.samples import read_samples, shard_metadata
from cotdistill.pipeline.sampling.job import JobFailed, SamplingJob
from cotdistill.pipeline.sampling.manifest import load_manifest
from cotdistill.pipeline.sampling.pool import open_pool
from cotdistill.pipeline.sampling.units import ExampleRef, JobSpec, UnitParams, plan_units
from tests.unit.sampling.fake_teacher import FakeTeacher, Fault, fake_teachers

N_EXAMPLES, D, UNIT = 10, 3, 3
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.0, max_delay_s=0.0)


def spec(**params: object) -> JobSpec:
    base = dict(num_samples=D, temperature=0.7, top_p=1.0, max_tokens=16, top_k_logprobs=4, seed=1)
    return JobSpec("toy", "train", UnitParams(**{**base, **params}), unit_size=UNIT)  # type: ignore[arg-type]


EXAMPLES = [ExampleRef(id=f"ex{i}", prompt=f"Q: {i}?", gold="4") for i in range(N_EXAMPLES)]


@pytest.fixture
async def teachers() -> AsyncIterator[list[tuple[FakeTeacher, str]]]:
    async with fake_teachers(2) as started:
        yield started


async def run_job(store: ArtifactStore, addresses: list[str], job_spec: JobSpec | None = None, **kw: object):  # type: ignore[no-untyped-def]
    job_spec = job_spec or spec()
    pool = open_pool(addresses, cooldown_s=float(kw.pop("cooldown_s", 1.0)))  # type: ignore[arg-type]
    try:
        job = SamplingJob(
            job_spec,
            plan_units(EXAMPLES, job_spec),
            store,
            pool,
            concurrency=int(kw.pop("concurrency", 2)),  # type: ignore[call-overload]
            retry=kw.pop("retry", FAST_RETRY),  # type: ignore[arg-type]
            extract=lambda text, _answer: text.rsplit("is ", 1)[-1].rstrip("."),
            info_timeout_s=float(kw.pop("info_timeout_s", 5)),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )
        return await job.run()
    finally:
        await pool.close()


def pairs(root: Path) -> Counter[tuple[str, int]]:
    table = read_samples(root / "samples")
    return Counter(zip(table.example_id, table.sample_index.tolist(), strict=True))


def events(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / "samples" / "events.jsonl").read_text().splitlines()]


async def test_every_example_and_sample_index_exactly_once(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path)
    result = await run_job(store, [a for _, a in teachers])
    counts = pairs(tmp_path)
    assert set(counts) == {(f"ex{i}", s) for i in range(N_EXAMPLES) for s in range(D)}
    assert set(counts.values()) == {1}
    assert result.units_done == result.units_total == 4  # 10 examples in units of 3
    # Both replicas got work (round-robin), and the manifest records the teacher and every unit.
    assert all(fake.calls for fake, _ in teachers)
    manifest = load_manifest(store)
    assert manifest is not None and len(manifest.completed) == 4
    assert manifest.teacher is not None and manifest.teacher.tokenizer.content_hash == "abc123"
    table = read_samples(tmp_path / "samples")
    assert table.k == 4 and table.top_ids.shape[1] == 4
    assert [c for c in table.correct] == [s % 2 == 0 for s in table.sample_index.tolist()]
    meta = shard_metadata(next((tmp_path / "samples").glob("part-*.parquet")))
    assert meta.teacher.model_id == "fake-teacher" and meta.tokenizer_hash == "abc123"


async def test_failed_unit_is_retried_on_the_other_replica(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    (bad, bad_address), (_, good_address) = teachers
    # The first replica fails mid-stream (after 2 results), cuts a stream short, returns aborted
    # generations (as when it shuts down), then refuses every call.
    bad.faults = [Fault(grpc.StatusCode.UNAVAILABLE, after=2), Fault(after=1, cut=True), Fault(aborted=True)]
    bad.faults += [Fault()] * 10
    # No cool-down: the bad replica keeps getting new units, so every scripted fault happens.
    await run_job(ArtifactStore(tmp_path), [bad_address, good_address], concurrency=1, cooldown_s=0.0)
    assert set(pairs(tmp_path).values()) == {1} and len(pairs(tmp_path)) == N_EXAMPLES * D
    log = events(tmp_path)
    failed = [e for e in log if e["event"] == "unit_failed"]
    assert failed and all(e["replica"] == bad_address for e in failed)
    errors = " | ".join(str(e["error"]) for e in failed)
    assert "UNAVAILABLE" in errors and "stream ended after 1 of 9" in errors and "aborted by" in errors
    for failure in failed:  # the retry of each failed attempt went to the other replica
        retry = next(
            e
            for e in log
            if e["event"] == "unit_started"
            and e["unit_id"] == failure["unit_id"]
            and e["attempt"] == failure["attempt"] + 1  # type: ignore[operator]
        )
        assert retry["replica"] == good_address
    assert sum(1 for e in log if e["event"] == "unit_completed") == 4


async def test_invalid_argument_fails_fast_and_keeps_finished_units(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    (fake, address), _ = teachers
    fake.faults = [None, None, Fault(grpc.StatusCode.INVALID_ARGUMENT)]  # calls 1-2 fine, 3rd rejected
    store = ArtifactStore(tmp_path)
    with pytest.raises(JobFailed, match="INVALID_ARGUMENT.*re-run the same command to resume"):
        await run_job(store, [address], concurrency=1)
    manifest = load_manifest(store)
    assert manifest is not None and len(manifest.completed) == 2
    assert len(fake.calls) == 3  # not retried: the same request would be rejected everywhere
    # A re-run samples only the missing units.
    fake.faults = []
    result = await run_job(store, [address], concurrency=1)
    assert len(result.sampled) == 2 and result.units_done == 4
    assert set(pairs(tmp_path).values()) == {1} and len(pairs(tmp_path)) == N_EXAMPLES * D


async def test_rerun_of_a_finished_job_samples_nothing(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path)
    await run_job(store, [a for _, a in teachers])
    calls = sum(len(f.calls) for f, _ in teachers)
    result = await run_job(store, [a for _, a in teachers])
    assert result.sampled == [] and result.units_done == 4
    assert sum(len(f.calls) for f, _ in teachers) == calls


async def test_changed_parameters_refuse_to_mix_into_old_samples(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path)
    await run_job(store, [teachers[0][1]])
    with pytest.raises(ConfigError, match=r"different job \(changed: params.temperature\)"):
        await run_job(store, [teachers[0][1]], job_spec=spec(temperature=0.9))


async def test_replicas_with_different_tokenizers_are_refused(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    teachers[1][0].tokenizer_hash = "other"
    with pytest.raises(CotdistillError, match="different models or tokenizers"):
        await run_job(ArtifactStore(tmp_path), [a for _, a in teachers])


async def test_exhausted_retries_name_the_unit(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    (fake, address), _ = teachers
    fake.faults = [Fault(grpc.StatusCode.UNAVAILABLE)] * 100
    with pytest.raises(JobFailed, match="4 attempts failed, last UNAVAILABLE"):
        await run_job(ArtifactStore(tmp_path), [address], concurrency=1)


async def test_no_reachable_replica_is_a_clear_error(tmp_path: Path) -> None:
    from cotdistill.common.errors import Unavailable
    from tests.conftest import free_port

    with pytest.raises(Unavailable, match="no teacher replica answered Info"):
        await run_job(ArtifactStore(tmp_path), [f"127.0.0.1:{free_port()}"], info_timeout_s=1)


async def test_a_dns_name_with_several_records_is_one_replica_per_record(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    import socket

    (_, address), _ = teachers
    port = address.rsplit(":", 1)[1]
    records = {info[4][0] for info in socket.getaddrinfo("localhost", int(port), type=socket.SOCK_STREAM)}
    pool = open_pool([f"dns:///localhost:{port}"])
    try:
        assert len(pool) == len(records)  # e.g. 127.0.0.1 and ::1
    finally:
        await pool.close()
    # Records where nothing listens (::1 here) fail fast and their units move to 127.0.0.1.
    await run_job(ArtifactStore(tmp_path), [f"dns:///localhost:{port}"])
    assert set(pairs(tmp_path).values()) == {1} and len(pairs(tmp_path)) == N_EXAMPLES * D


async def test_a_failed_replica_sits_out_a_cooldown_then_gets_work_again() -> None:
    import time

    pool = open_pool(["127.0.0.1:1", "127.0.0.1:2"], cooldown_s=60.0)
    try:
        bad, good = pool.replicas
        pool.mark(bad, False)
        assert {pool.pick().address for _ in range(4)} == {good.address}
        pool._failed_at[bad.address] = time.monotonic() - 61  # the cool-down has passed
        assert {pool.pick().address for _ in range(4)} == {bad.address, good.address}
        pool.mark(good, False)
        pool.mark(bad, False)  # both cooling down: the one with fewer failures still gets work
        assert pool.pick().address == good.address
    finally:
        await pool.close()


async def test_an_object_store_run_dir_works_the_same(teachers) -> None:  # type: ignore[no-untyped-def]
    import io

    import fsspec
    from rich.console import Console

    from cotdistill.pipeline.sampling.stage import run_filter

    store = ArtifactStore("memory://sampling-test-run")
    try:
        await run_job(store, [a for _, a in teachers])
        assert len(store.list("samples", pattern="part-*.parquet")) == 4
        result = await run_job(store, [a for _, a in teachers])  # resumes from the object store
        assert result.sampled == [] and result.units_done == 4
        stats = run_filter(store, Console(quiet=True))
        assert stats["total"] == N_EXAMPLES * D and stats["kept"] == N_EXAMPLES * 2  # even samples are correct
        kept = read_samples_bytes(io.BytesIO(store.read_bytes("train", "part-00000.parquet")))
        assert kept == N_EXAMPLES * 2
    finally:
        fsspec.filesystem("memory").rm("/sampling-test-run", recursive=True)


def read_samples_bytes(handle: object) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(handle).metadata.num_rows)  # type: ignore[arg-type]

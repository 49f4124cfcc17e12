"""The teacher jobs' engine: work units over teacher replicas, exactly once, resumable.

Flow of one unit: pick a replica (round-robin, avoiding ones that just failed) -> one call for
the whole unit (a streaming ``Sample`` of its prompts x D, or one ``Score`` of its rationales)
-> buffer every result in memory -> check each expected row arrived exactly once -> write the
unit's shard atomically -> record the unit in the manifest. Any failure before the shard write
throws the partial results away and retries the whole unit on another replica after a backoff,
so a row is stored only as part of a complete unit, under a name fixed by the unit id: never
twice, never half.

:class:`UnitJob` is that machinery; :class:`SamplingJob` (here) and
:class:`~cotdistill.pipeline.scoring.job.ScoringJob` say what one call of a unit is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cotdistill.common import enums
from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import CotdistillError
from cotdistill.common.grpc_client import Replica, ReplicaPool
from cotdistill.common.retry import CallFailed, IncompleteUnit, RetryPolicy, on_replicas
from cotdistill.common.samples import MAX_TOP_K, SampleRecord, ShardMetadata, TeacherFacts, shard_bytes, write_shard
from cotdistill.common.tasks.teacher_prompts import ChatPrompt
from cotdistill.common.teacher_info import fetch_teacher_info
from cotdistill.pipeline.sampling.manifest import (
    SAMPLES_DIR,
    Manifest,
    Reconciliation,
    UnitRecord,
    check_compatible,
    load_manifest,
    reconcile,
    save_manifest,
)
from cotdistill.pipeline.sampling.metrics import SamplingMetrics
from cotdistill.pipeline.sampling.units import ExampleRef, JobIdentity, JobSpec, WorkUnit
from cotdistill.v1 import common_pb2, teacher_pb2, teacher_pb2_grpc

log = logging.getLogger(__name__)

EVENTS = "events.jsonl"
_FINISH = enums.names(common_pb2.FinishReason)
_MODES = enums.names(common_pb2.LogprobMode)

Extractor = Callable[[str, str | None], str | None]
"""(rationale, stage-2 answer text or None) -> extracted answer, or None when none is found."""
Matcher = Callable[[str | None, str], bool]
"""(prediction, gold) -> whether they agree."""


class JobFailed(CotdistillError):
    """Some units could not be sampled; the completed ones are kept and a re-run resumes."""


class ProgressSink(Protocol):
    def start(self, total_examples: int, done_examples: int, total_units: int) -> None: ...

    def unit_done(self, record: UnitRecord) -> None: ...

    def stop(self) -> None: ...


@dataclass
class JobResult:
    """What one run of the job did (a resumed run counts only its own work in ``sampled``)."""

    units_total: int
    units_done: int
    sampled: list[UnitRecord] = field(default_factory=list)
    reconciliation: Reconciliation = field(default_factory=Reconciliation)
    teacher: TeacherFacts = field(default_factory=TeacherFacts)
    elapsed_s: float = 0.0

    @property
    def samples(self) -> int:
        return sum(r.samples for r in self.sampled)

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.sampled)


class EventLog:
    """Append-only JSON lines under samples/ (local stores only): what each run did, for humans
    and for the fault tests that count unit completions across driver restarts."""

    def __init__(self, store: ArtifactStore) -> None:
        self.path = store.path(SAMPLES_DIR, EVENTS) if store.is_local else None
        self.run = f"{os.getpid()}-{int(time.time() * 1000)}"

    def write(self, event: str, **fields: Any) -> None:
        if self.path is None:
            return
        line = json.dumps({"t": round(time.time(), 3), "run": self.run, "event": event, **fields})
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())


class UnitJob(ABC):
    """Runs the units not yet in the manifest over the replicas; see the module docstring.

    A subclass says what one attempt of a unit is (:meth:`_attempt`: one call to one replica,
    returning the unit's complete rows, or raising ``grpc.aio.AioRpcError`` / ``IncompleteUnit``
    to have it retried elsewhere), what it checks once the teacher is known (:meth:`_prepare`),
    how many rows each example of a unit yields (:attr:`rows_per_example`) and what its shards
    record besides the common metadata (:meth:`_shard_metadata`).
    """

    def __init__(
        self,
        spec: JobIdentity,
        units: Sequence[WorkUnit],
        store: ArtifactStore,
        pool: ReplicaPool,
        *,
        concurrency: int = 8,
        timeout_s: float = 600.0,
        retry: RetryPolicy | None = None,
        progress: ProgressSink | None = None,
        info_timeout_s: float = 60.0,
        metrics: SamplingMetrics | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency: must be >= 1, got {concurrency}")
        self.spec = spec
        self.units = list(units)
        self.store = store
        self.pool = pool
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.progress = progress
        self.info_timeout_s = info_timeout_s
        self.metrics = metrics
        self.events = EventLog(store)
        self._manifest: Manifest | None = None
        self._manifest_lock = asyncio.Lock()
        self._rng = random.Random()
        self._fatal = False

    @property
    @abstractmethod
    def rows_per_example(self) -> int:
        """Rows a unit stores per example (D for sampling, 1 for scoring)."""

    def _prepare(self, teacher: TeacherFacts) -> None:  # noqa: B027 - optional hook
        """Check the job against the teacher's Info before any unit runs (raise to refuse)."""

    @abstractmethod
    async def _attempt(self, unit: WorkUnit, replica: Replica, attempt: int) -> list[SampleRecord]:
        """One call of ``unit`` to ``replica``: its complete rows, in a stable order."""

    def _shard_metadata(self, teacher: TeacherFacts) -> dict[str, Any]:
        """Job-specific :class:`ShardMetadata` fields (``logprob_mode``, ``prompt_template``)."""
        return {}

    async def run(self) -> JobResult:
        if self.metrics is None:
            return await self._run()
        # The backlog is published before waiting for a teacher: with the teacher scaled to zero,
        # this gauge is what brings the first replica up (an upper bound until the manifest is read).
        self.metrics.planned(len(self.units), len(self.units))
        try:
            return await self._run()
        finally:
            self.metrics.finished()

    async def _run(self) -> JobResult:
        started = time.monotonic()
        teacher = await fetch_teacher_info(self.pool, timeout_s=self.info_timeout_s)
        self._prepare(teacher)
        self.store.makedirs(SAMPLES_DIR)
        manifest = await asyncio.to_thread(load_manifest, self.store)
        if manifest is None:
            manifest = Manifest.new(self.spec, teacher, len(self.units))
        else:
            check_compatible(manifest, self.spec, teacher)
            manifest.teacher = manifest.teacher or teacher
        manifest.units_total = len(self.units)
        report = await asyncio.to_thread(reconcile, self.store, manifest, self.units, self.rows_per_example)
        await asyncio.to_thread(save_manifest, self.store, manifest)
        self._manifest = manifest
        pending = [u for u in self.units if u.unit_id not in manifest.completed]
        if self.metrics is not None:
            self.metrics.planned(len(self.units), len(pending))
        self.events.write(
            "job_started",
            units_total=len(self.units),
            units_pending=len(pending),
            adopted=report.adopted,
            missing=report.missing,
            stale=report.stale,
            replicas=[r.address for r in self.pool.replicas],
        )
        if report.adopted or report.missing or report.stale:
            log.info(
                "reconciled samples/: adopted %d finished shards, %d listed units missing, %d stale shards moved aside",
                len(report.adopted),
                len(report.missing),
                len(report.stale),
            )
        result = JobResult(len(self.units), len(manifest.completed), reconciliation=report, teacher=teacher)
        if self.progress is not None:
            done_examples = sum(r.examples for r in manifest.completed.values())
            self.progress.start(sum(len(u.examples) for u in self.units), done_examples, len(self.units))
        queue: asyncio.Queue[WorkUnit] = asyncio.Queue()
        for unit in pending:
            queue.put_nowait(unit)
        failures: list[str] = []
        try:
            workers = [
                asyncio.create_task(self._worker(queue, teacher, result, failures))
                for _ in range(min(self.concurrency, len(pending)))
            ]
            await asyncio.gather(*workers)
        finally:
            if self.progress is not None:
                self.progress.stop()
        result.units_done = len(manifest.completed)
        result.elapsed_s = time.monotonic() - started
        self.events.write("job_finished", units_done=result.units_done, failed=len(failures))
        if failures:
            raise JobFailed(
                f"{len(failures)} of {len(self.units)} units failed ({'; '.join(failures[:3])}); "
                f"{result.units_done} units are stored, re-run the same command to resume"
            )
        return result

    async def _worker(
        self, queue: asyncio.Queue[WorkUnit], teacher: TeacherFacts, result: JobResult, failures: list[str]
    ) -> None:
        while not queue.empty():
            if self._fatal:
                return  # a non-retryable error stops new work; units in flight still finish
            unit = queue.get_nowait()
            try:
                record = await self._run_unit(unit, teacher)
            except _UnitError as err:
                failures.append(str(err))
                self._fatal = self._fatal or err.fatal
                continue
            result.sampled.append(record)
            if self.progress is not None:
                self.progress.unit_done(record)

    async def _run_unit(self, unit: WorkUnit, teacher: TeacherFacts) -> UnitRecord:
        def started(replica: Replica, attempt: int) -> None:
            self.events.write(
                "unit_started", unit_id=unit.unit_id, index=unit.index, attempt=attempt, replica=replica.address
            )

        def failed(replica: Replica, attempt: int, what: str) -> None:
            self.events.write("unit_failed", unit_id=unit.unit_id, attempt=attempt, replica=replica.address, error=what)

        async def attempt(replica: Replica, n: int) -> list[SampleRecord]:
            return await self._attempt(unit, replica, n)

        try:
            records, replica, n = await on_replicas(
                self.pool, attempt, self.retry, rng=self._rng, started=started, failed=failed
            )
        except CallFailed as err:
            if not err.retryable:
                raise _UnitError(f"unit {unit.index} on {err.replica}: {err.what}", fatal=True) from None
            raise _UnitError(f"unit {unit.index}: {err.attempts} attempts failed, last {err.what}") from None
        return await self._store(unit, records, replica, n, teacher)

    async def _store(
        self,
        unit: WorkUnit,
        records: list[SampleRecord],
        replica: Replica,
        attempt: int,
        teacher: TeacherFacts,
    ) -> UnitRecord:
        metadata = ShardMetadata(
            teacher=teacher,
            job=self.spec.as_dict(),
            unit_id=unit.unit_id,
            unit_index=unit.index,
            replica=replica.address,
            attempt=attempt,
            **self._shard_metadata(teacher),
        )
        await asyncio.to_thread(self._write, unit.shard_name, records, metadata)
        record = UnitRecord(
            unit_id=unit.unit_id,
            index=unit.index,
            shard=unit.shard_name,
            examples=len(unit.examples),
            samples=len(records),
            tokens=sum(len(r.token_ids) for r in records),
            replica=replica.address,
            attempts=attempt,
        )
        assert self._manifest is not None
        async with self._manifest_lock:
            self._manifest.completed[unit.unit_id] = record
            await asyncio.to_thread(save_manifest, self.store, self._manifest)
        if self.metrics is not None:
            self.metrics.unit_stored()
        self.events.write(
            "unit_completed", unit_id=unit.unit_id, index=unit.index, attempt=attempt, replica=replica.address
        )
        return record

    def _write(self, name: str, records: list[SampleRecord], metadata: ShardMetadata) -> None:
        if self.store.is_local:
            write_shard(self.store.path(SAMPLES_DIR, name), records, metadata)
        else:  # an object store upload is atomic by itself
            self.store.write_bytes(shard_bytes(records, metadata), SAMPLES_DIR, name)


class SamplingJob(UnitJob):
    """The sampling job: each unit is one streaming ``Sample`` of its prompts x D."""

    spec: JobSpec

    def __init__(
        self,
        spec: JobSpec,
        units: Sequence[WorkUnit],
        store: ArtifactStore,
        pool: ReplicaPool,
        *,
        extract: Extractor | None = None,
        match: Matcher | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec, units, store, pool, **kwargs)
        self.extract = extract
        self.match = match
        self._use_chat = False

    @property
    def rows_per_example(self) -> int:
        return self.spec.params.num_samples

    def _prepare(self, teacher: TeacherFacts) -> None:
        self._check_params(teacher)
        self._use_chat = use_chat_template(self.spec.params.prompt_template, teacher, "sampling.prompt_template")

    def _shard_metadata(self, teacher: TeacherFacts) -> dict[str, Any]:
        return {
            "logprob_mode": self.spec.params.logprob_mode,
            "prompt_template": "chat" if self._use_chat else "raw",
        }

    def _prompt(self, example: ExampleRef) -> teacher_pb2.Prompt:
        if not self._use_chat or example.chat is None:
            return teacher_pb2.Prompt(id=example.id, text=example.prompt)
        return teacher_pb2.Prompt(id=example.id, chat=chat_message(example.chat))

    def _check_params(self, teacher: TeacherFacts) -> None:
        k = self.spec.params.top_k_logprobs
        if k > (teacher.max_top_k or MAX_TOP_K):
            raise CotdistillError(
                f"sampling.top_k_logprobs: {k} is more than the teacher's maximum {teacher.max_top_k}"
            )

    async def _attempt(self, unit: WorkUnit, replica: Replica, attempt: int) -> list[SampleRecord]:
        return [self._record(unit, r) for r in await self._sample(unit, replica, attempt)]

    def _request(self, unit: WorkUnit, attempt: int) -> teacher_pb2.SampleRequest:
        p = self.spec.params
        params = teacher_pb2.SamplingParams(
            n=p.num_samples,
            temperature=p.temperature,
            top_p=p.top_p,
            max_tokens=p.max_tokens,
            stop=list(p.stop),
            top_k_logprobs=p.top_k_logprobs,
            logprob_mode=_MODES.value(p.logprob_mode),
        )
        if unit.seed is not None:
            params.seed = unit.seed
        request = teacher_pb2.SampleRequest(
            prompts=[self._prompt(e) for e in unit.examples],
            params=params,
            request_id=f"{unit.unit_id}/{attempt}",
        )
        if p.answer_trigger is not None:
            request.two_stage.CopyFrom(
                teacher_pb2.TwoStage(answer_trigger=p.answer_trigger, answer_max_tokens=p.answer_max_tokens)
            )
        return request

    async def _sample(self, unit: WorkUnit, replica: Replica, attempt: int) -> list[teacher_pb2.SampleResponse]:
        stub = teacher_pb2_grpc.TeacherServiceStub(replica.channel)
        n = self.spec.params.num_samples
        expected = unit.expected_results(n)
        got: dict[tuple[int, int], teacher_pb2.SampleResponse] = {}
        call = stub.Sample(self._request(unit, attempt), timeout=self.timeout_s)
        try:
            async for response in call:
                key = (response.prompt_index, response.sample_index)
                if response.prompt_index >= len(unit.examples) or response.sample_index >= n or key in got:
                    raise IncompleteUnit(f"unexpected result {key} from {replica.address}")
                if response.finish_reason == common_pb2.FINISH_REASON_ABORT:
                    # Cut short by the replica (shutting down): not a sample of the teacher.
                    raise IncompleteUnit(f"result {key} was aborted by {replica.address}")
                got[key] = response
        finally:
            call.cancel()  # no-op when the stream ended; frees the replica when we bail out
        if len(got) != expected:
            raise IncompleteUnit(f"stream ended after {len(got)} of {expected} results")
        return [got[key] for key in sorted(got)]

    def _record(self, unit: WorkUnit, r: teacher_pb2.SampleResponse) -> SampleRecord:
        example = unit.examples[r.prompt_index]
        answer_text = r.answer_text if r.HasField("answer_text") else None
        if self.extract is not None:
            prediction = self.extract(r.text, answer_text)
        else:
            prediction = r.extracted_answer if r.HasField("extracted_answer") else None
        correct = None
        if example.gold is not None and prediction is not None:
            correct = self.match(prediction, example.gold) if self.match else prediction == example.gold
        elif example.gold is not None:
            correct = False  # no answer found is a wrong answer
        lp = r.logprobs
        return SampleRecord(
            example_id=example.id,
            sample_index=r.sample_index,
            prompt=r.prompt_text or example.prompt,
            rationale=r.text,
            dataset=self.spec.dataset,
            split=self.spec.split,
            answer_text=answer_text,
            prediction=prediction,
            gold=example.gold,
            correct=correct,
            finish_reason=_FINISH.name(r.finish_reason, "stop"),
            prompt_tokens=r.usage.prompt_tokens,
            token_ids=lp.token_ids,
            token_logprobs=lp.token_logprobs,
            top_k=lp.k,
            top_ids=lp.top_ids,
            top_logprobs=lp.top_logprobs,
        )


def use_chat_template(mode: str, teacher: TeacherFacts, key: str) -> bool:
    """Whether prompts go through the teacher's chat template under ``mode`` (auto|chat|raw)."""
    has_template = bool(teacher.tokenizer.chat_template)
    if mode == "chat" and not has_template:
        raise CotdistillError(
            f"{key}: chat, but the teacher {teacher.model_id!r} has no chat template; use raw or auto"
        )
    return mode == "chat" or (mode == "auto" and has_template)


def chat_message(chat: ChatPrompt) -> teacher_pb2.ChatPrompt:
    """A task-layer conversation as the teacher's ``ChatPrompt``."""
    return teacher_pb2.ChatPrompt(
        messages=[teacher_pb2.ChatMessage(role=r, content=c) for r, c in chat.messages],
        assistant_prefix=chat.prefix,
    )


class _UnitError(Exception):
    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal

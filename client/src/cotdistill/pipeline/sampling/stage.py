"""The ``sample`` and ``filter`` pipeline stages: recipe sections -> a sampling job -> train/.

``sample`` loads the dataset split, renders each question in the teacher prompt format, plans
work units and runs :class:`SamplingJob` over the teacher replicas (resuming whatever an earlier
run left). ``filter`` keeps the correct samples (and drops duplicates) into ``train/`` and
writes ``train/filter_stats.json``.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from cotdistill.common import tasks
from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import ConfigError
from cotdistill.common.grpc_client import ReplicaPool
from cotdistill.common.retry import RetryPolicy
from cotdistill.common.samples import SampleRecord, ShardMetadata, read_records, shard_bytes, write_shard
from cotdistill.pipeline.run_config import FilterSection, RunConfig, SamplingSection, ScoringSection
from cotdistill.pipeline.sampling.job import JobResult, SamplingJob, UnitJob
from cotdistill.pipeline.sampling.manifest import SAMPLES_DIR
from cotdistill.pipeline.sampling.metrics import serve_from_env
from cotdistill.pipeline.sampling.pool import open_pool
from cotdistill.pipeline.sampling.progress import RichProgress
from cotdistill.pipeline.sampling.units import ExampleRef, JobSpec, UnitParams, WorkUnit, plan_units

TRAIN_DIR = "train"
FILTER_STATS = "filter_stats.json"
TRAIN_SHARD_ROWS = 50_000


def job_spec(section: SamplingSection) -> JobSpec:
    """The job identity of a recipe's sampling section (``limit`` and throughput knobs excluded)."""
    trigger = None
    if section.two_stage:
        # Fine-tune-CoT stage 2 is stage 1 + rationale + " " + trigger (tasks.render_answer_prompt).
        trigger = (
            section.answer_trigger
            if section.answer_trigger is not None
            else " " + tasks.answer_trigger(section.dataset)
        )
    params = UnitParams(
        num_samples=section.num_samples,
        temperature=section.temperature,
        top_p=section.top_p,
        max_tokens=section.max_tokens,
        top_k_logprobs=section.top_k_logprobs,
        logprob_mode=section.logprob_mode,
        stop=tuple(section.stop),
        prompt_format=section.prompt_format,
        prompt_template=section.prompt_template,
        system_prompt=section.system_prompt,
        answer_trigger=trigger,
        answer_max_tokens=section.answer_max_tokens,
        seed=section.seed,
    )
    return JobSpec(dataset=section.dataset, split=section.split, params=params, unit_size=section.unit_size)


def load_examples(section: SamplingSection) -> list[ExampleRef]:
    """The questions of the recipe, rendered in its teacher prompt format, with gold answers."""
    try:
        examples = tasks.load_dataset(section.dataset, section.split, limit=section.limit)
    except tasks.UnknownDatasetError as err:
        raise ConfigError(str(err), key="sampling.dataset") from None
    except tasks.UnknownSplitError as err:
        raise ConfigError(str(err), key="sampling.split") from None
    if not examples:
        raise ConfigError(f"{section.dataset}/{section.split} has no examples", key="sampling.dataset")

    def chat(e: tasks.Example) -> tasks.ChatPrompt | None:
        if section.prompt_template == "raw":
            return None
        return tasks.teacher_chat_prompt(section.prompt_format, e, system=section.system_prompt)

    try:
        return [
            ExampleRef(
                id=e.id, prompt=tasks.render_teacher_prompt(section.prompt_format, e), gold=e.answer, chat=chat(e)
            )
            for e in examples
        ]
    except tasks.UnknownFormatError as err:
        raise ConfigError(str(err), key="sampling.prompt_format") from None


def plan(section: SamplingSection) -> tuple[JobSpec, list[WorkUnit]]:
    """The job's spec and its units; dataset errors name the recipe key."""
    try:
        spec = job_spec(section)
    except tasks.UnknownDatasetError as err:
        raise ConfigError(str(err), key="sampling.dataset") from None
    return spec, plan_units(load_examples(section), spec)


def answer_functions(section: SamplingSection) -> tuple[Any, Any]:
    """(extract, match) for the dataset: Kojima et al. extraction, type-aware comparison."""
    dataset = section.dataset
    answer_type = tasks.get_dataset_info(dataset).answer_type

    def extract(rationale: str, answer_text: str | None) -> str | None:
        if answer_text is not None:
            return tasks.extract_answer(answer_text, dataset, after_trigger=True)
        return tasks.extract_answer(rationale, dataset)

    def match(prediction: str | None, gold: str) -> bool:
        return tasks.answers_match(prediction, gold, answer_type)

    return extract, match


JobBuilder = Callable[..., UnitJob]
"""``build(pool, **common)``: a job over ``pool`` with the common keyword arguments (concurrency,
timeout, retry policy, progress, Info timeout, metrics) of :func:`run_teacher_job`."""


async def run_teacher_job(
    config: RunConfig,
    section: SamplingSection | ScoringSection,
    build: JobBuilder,
    console: Console | None,
    *,
    verb: str,
    items: str,
) -> JobResult:
    """Open the teacher replicas and the backlog metrics, build a job over them and run it."""
    pool = open_pool(config.teacher.addresses)
    try:
        with serve_from_env(config.name) as metrics:
            job = build(
                pool,
                concurrency=section.concurrency,
                timeout_s=config.teacher.timeout_s,
                retry=RetryPolicy(
                    max_attempts=section.max_attempts,
                    base_delay_s=section.retry_delay_s,
                    max_delay_s=max(section.retry_delay_s, 10.0),
                ),
                progress=RichProgress(console, verb=verb, items=items) if console is not None else None,
                info_timeout_s=config.teacher.connect_timeout_s,
                metrics=metrics,
            )
            return await job.run()
    finally:
        await pool.close()


async def run_sampling(config: RunConfig, store: ArtifactStore, console: Console | None = None) -> JobResult:
    """Plan and run (or resume) the recipe's sampling job; samples land under ``samples/``."""
    section = config.sampling
    spec, units = plan(section)
    extract, match = answer_functions(section)

    def build(pool: ReplicaPool, **common: Any) -> UnitJob:
        return SamplingJob(spec, units, store, pool, extract=extract, match=match, **common)

    return await run_teacher_job(config, section, build, console, verb="sampling", items="examples")


def sample_stage(config: RunConfig, store: ArtifactStore, console: Console) -> None:
    """Pipeline stage ``sample``."""
    started = time.monotonic()
    result = asyncio.run(run_sampling(config, store, console))
    rec = result.reconciliation
    resumed = result.units_done - len(result.sampled)
    console.print(
        f"[green]sampled[/] {result.samples} samples ({result.tokens} tokens) in {len(result.sampled)} units "
        f"over {time.monotonic() - started:.1f}s; {result.units_done}/{result.units_total} units done"
        + (f" ({resumed} from earlier runs, {len(rec.adopted)} adopted after a crash)" if resumed else "")
        + f" -> {store.uri(SAMPLES_DIR)}"
    )


def filter_stage(config: RunConfig, store: ArtifactStore, console: Console) -> None:
    """Pipeline stage ``filter``."""
    run_filter(store, console, config.filter)


def run_filter(store: ArtifactStore, console: Console, section: FilterSection | None = None) -> dict[str, Any]:
    """Correct, non-duplicate samples of ``samples/`` -> ``train/``; returns the statistics."""
    shards = [s for s in store.list(SAMPLES_DIR, pattern="part-*.parquet")]
    if not shards:
        raise ConfigError(f"no sample shards under {store.uri(SAMPLES_DIR)}: run the sample stage first")
    records: list[SampleRecord] = []
    metadata: ShardMetadata | None = None
    for rel in shards:
        rows, meta = read_records(store.path(rel)) if store.is_local else _read_remote(store, rel)
        records.extend(rows)
        metadata = metadata or meta
    assert metadata is not None  # there is at least one shard
    section = section or FilterSection()
    kept, stats = tasks.filter_samples(
        records,
        require_correct=section.require_correct,
        drop_truncated=section.drop_truncated,
        dedupe=section.dedupe,
        min_rationale_chars=section.min_rationale_chars,
        max_rationale_chars=section.max_rationale_chars,
    )
    # Old outputs first: a re-run must not leave shards of an earlier filter pass behind.
    for old in store.list(TRAIN_DIR, pattern="part-*.parquet"):
        store.fs.rm(store.path(old))
    shard_meta = metadata.without_unit(filter=stats.settings)
    for i, start in enumerate(range(0, max(len(kept), 1), TRAIN_SHARD_ROWS)):
        chunk = kept[start : start + TRAIN_SHARD_ROWS]
        name = f"part-{i:05d}.parquet"
        if store.is_local:
            write_shard(store.path(TRAIN_DIR, name), chunk, shard_meta)
        else:
            store.write_bytes(shard_bytes(chunk, shard_meta), TRAIN_DIR, name)
    summary = {
        **stats.to_dict(),
        "source": store.uri(SAMPLES_DIR),
        "shards": len(shards),
        "teacher": metadata.teacher.to_dict(),
    }
    store.write_json(summary, TRAIN_DIR, FILTER_STATS)
    dropped = ", ".join(f"{k} {v}" for k, v in stats.dropped.items() if v) or "none"
    console.print(
        f"[green]kept[/] {stats.kept}/{stats.total} samples ({stats.kept_fraction:.1%}) of "
        f"{stats.examples_kept}/{stats.examples_total} examples; dropped: {dropped} -> {store.uri(TRAIN_DIR)}"
    )
    return summary


def _read_remote(store: ArtifactStore, rel: str) -> tuple[list[SampleRecord], ShardMetadata]:
    return read_records(io.BytesIO(store.read_bytes(rel)))

"""The ``score`` pipeline stage: the recipe's ``scoring`` section -> a scoring job -> ``samples/``.

Scored shards go where sampled ones go (``samples/``, with the same manifest and event log), so
``filter`` and ``train`` take them unchanged: ``stages: [score, filter, train, ...]``. A run
directory holds one job's samples; the manifest refuses to mix a scoring job into a sampling
job's samples (use another run name, and list both in ``training.data.train_paths``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.console import Console

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import ConfigError
from cotdistill.common.grpc_client import ReplicaPool
from cotdistill.pipeline.run_config import RunConfig, ScoringSection
from cotdistill.pipeline.sampling.job import JobResult, UnitJob
from cotdistill.pipeline.sampling.manifest import SAMPLES_DIR
from cotdistill.pipeline.sampling.stage import run_teacher_job
from cotdistill.pipeline.sampling.units import WorkUnit
from cotdistill.pipeline.scoring.job import ScoringJob
from cotdistill.pipeline.scoring.sources import rationales
from cotdistill.pipeline.scoring.units import ScoreParams, ScoreSpec, plan_score_units


def score_spec(section: ScoringSection) -> ScoreSpec:
    """The job identity of a recipe's scoring section (``limit`` and throughput knobs excluded)."""
    params = ScoreParams(
        top_k_logprobs=section.top_k_logprobs,
        prompt_format=section.prompt_format,
        prompt_template=section.prompt_template,
        system_prompt=section.system_prompt,
        separator=section.separator,
    )
    source = "shards" if section.paths else f"gold:{section.dataset}/{section.split}"
    return ScoreSpec(
        source=source,
        dataset=section.dataset,
        split=section.split,
        params=params,
        unit_size=section.unit_size,
        paths=tuple(section.paths),
    )


def plan(section: ScoringSection) -> tuple[ScoreSpec, list[WorkUnit]]:
    """The job's spec and its units."""
    spec = score_spec(section)
    try:
        return spec, plan_score_units(rationales(section), spec)
    except ValueError as err:
        raise ConfigError(str(err), key="scoring.paths" if section.paths else "scoring.dataset") from None


async def run_scoring(config: RunConfig, store: ArtifactStore, console: Console | None = None) -> JobResult:
    """Plan and run (or resume) the recipe's scoring job; scored samples land under ``samples/``."""
    section = config.scoring
    spec, units = plan(section)

    def build(pool: ReplicaPool, **common: Any) -> UnitJob:
        return ScoringJob(spec, units, store, pool, **common)

    return await run_teacher_job(config, section, build, console, verb="scoring", items="rationales")


def score_stage(config: RunConfig, store: ArtifactStore, console: Console) -> None:
    """Pipeline stage ``score``."""
    started = time.monotonic()
    result = asyncio.run(run_scoring(config, store, console))
    resumed = result.units_done - len(result.sampled)
    console.print(
        f"[green]scored[/] {result.samples} rationales ({result.tokens} tokens) in {len(result.sampled)} units "
        f"over {time.monotonic() - started:.1f}s; {result.units_done}/{result.units_total} units done"
        + (f" ({resumed} from earlier runs)" if resumed else "")
        + f" -> {store.uri(SAMPLES_DIR)}"
    )

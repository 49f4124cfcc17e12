"""Pipeline stages of ``cotdistill run``, in order, and who provides each.

A stage is a function of (config, run store, console). Later work registers real stages here;
a stage without an implementation stops the run with a message naming what will provide it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.pipeline.run_config import RunConfig

StageFn = Callable[[RunConfig, ArtifactStore, Console], None]


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    provider: str
    run: StageFn | None = None


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("sample", "teacher rationales + top-k logprobs -> samples/*.parquet", "issue: Teacher service"),
        Stage("score", "the teacher's top-k over given rationales -> samples/*.parquet", "issue: Teacher scoring"),
        Stage("filter", "correctness filter and statistics -> train/", "issue: Reasoning tasks"),
        Stage("train", "student fine-tuning through the trainer -> checkpoints/", "issue: Trainer service"),
        Stage("evaluate", "accuracy in and out of distribution -> eval/", "issue: Evaluator service"),
        Stage("select", "checkpoint selection under a validation signal", "issue: Evaluator service"),
        Stage("serve", "load the chosen checkpoint into the model server", "issue: Student model server"),
    )
}


def register(name: str, run: StageFn) -> None:
    """Provide the implementation of stage ``name``."""
    stage = STAGES[name]
    STAGES[name] = Stage(stage.name, stage.summary, stage.provider, run)


# Implementations provided by the pipeline's own modules (imported last: they need Stage/register).
from cotdistill.pipeline.sampling.stage import filter_stage, sample_stage  # noqa: E402

register("sample", sample_stage)
register("filter", filter_stage)

from cotdistill.pipeline.scoring.stage import score_stage  # noqa: E402

register("score", score_stage)

from cotdistill.pipeline.serve_stage import serve_stage  # noqa: E402

register("serve", serve_stage)

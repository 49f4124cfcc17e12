"""Work units of a sampling job: the dataset x D samples cut into idempotent pieces.

A unit is ``unit_size`` consecutive examples, each sampled ``num_samples`` (D) times in one
``Sample`` call. Its id is a hash of everything that decides its output (dataset, split, example
ids, sampling parameters, seed), so the same unit always gets the same id and the same shard
name: a re-run, a retry on another replica, or a restart after a crash can only ever replace a
unit's shard, never add a second copy of its samples.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from cotdistill.common.tasks.teacher_prompts import ChatPrompt

JOB_FORMAT = 2
"""Bump when the meaning of a unit changes, so old manifests are not resumed by mistake.
2: prompts may go through the teacher's chat template (``prompt_template``)."""


@dataclass(frozen=True)
class ExampleRef:
    """What the driver needs of one example: its id, the rendered prompt, and the gold answer.

    ``chat`` is the same prompt as a conversation, sent instead of ``prompt`` when the job uses the
    teacher's chat template (it derives from the same example and format, so ``prompt`` still
    identifies the unit).
    """

    id: str
    prompt: str
    gold: str | None = None
    chat: ChatPrompt | None = field(default=None, compare=False)


@dataclass(frozen=True)
class UnitParams:
    """The sampling parameters that decide a unit's output (and so its id)."""

    num_samples: int
    temperature: float
    top_p: float
    max_tokens: int
    top_k_logprobs: int
    logprob_mode: str = "raw"
    stop: tuple[str, ...] = ()
    prompt_format: str = "zero_shot_cot"
    prompt_template: str = "auto"  # auto | chat | raw
    system_prompt: str | None = None
    answer_trigger: str | None = None  # two-stage Zero-shot-CoT when set
    answer_max_tokens: int = 32
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data


@dataclass(frozen=True)
class JobSpec:
    """Which questions and how: everything a unit id is derived from, except the examples."""

    dataset: str
    split: str
    params: UnitParams
    unit_size: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": JOB_FORMAT,
            "dataset": self.dataset,
            "split": self.split,
            "unit_size": self.unit_size,
            "params": self.params.as_dict(),
        }

    def fingerprint(self) -> str:
        """Hex digest of the spec; two jobs with equal fingerprints produce interchangeable units."""
        return digest(self.as_dict())


class JobIdentity(Protocol):
    """What a job is, for the manifest: a spec with a stable dict form and its fingerprint
    (:class:`JobSpec` here, ``ScoreSpec`` for the scoring job)."""

    def as_dict(self) -> dict[str, Any]: ...

    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class WorkUnit:
    """One Sample call's worth of work: ``len(examples) * num_samples`` results."""

    index: int
    unit_id: str
    examples: tuple[ExampleRef, ...]
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def shard_name(self) -> str:
        """Deterministic shard file name: redoing the unit overwrites, never duplicates."""
        return f"part-{self.index:05d}-{self.unit_id}.parquet"

    def expected_results(self, num_samples: int) -> int:
        return len(self.examples) * num_samples


def unit_seed(base_seed: int | None, index: int) -> int | None:
    """Seed of unit ``index``: distinct per unit (different units must not share noise), stable
    across re-runs (a redone unit draws the same samples where the engine allows)."""
    if base_seed is None:
        return None
    return int.from_bytes(hashlib.sha256(f"{base_seed}:{index}".encode()).digest()[:7], "big")


def plan_units(examples: Sequence[ExampleRef], spec: JobSpec) -> list[WorkUnit]:
    """Cut ``examples`` into units of ``spec.unit_size`` in order.

    Units are consecutive slices, so raising a job's ``limit`` keeps the ids of every earlier full
    unit (they are resumed, not redone). Raises ValueError on duplicate example ids, which would
    make "(example, sample index) exactly once" meaningless.
    """
    if spec.unit_size < 1:
        raise ValueError(f"unit_size: must be >= 1, got {spec.unit_size}")
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise ValueError(f"example ids must be unique; {ex.id!r} appears twice in {spec.dataset}/{spec.split}")
        seen.add(ex.id)
    base = spec.as_dict()
    units = []
    for index, start in enumerate(range(0, len(examples), spec.unit_size)):
        chunk = tuple(examples[start : start + spec.unit_size])
        seed = unit_seed(spec.params.seed, index)
        unit_id = digest({**base, "index": index, "seed": seed, "examples": [[e.id, e.prompt] for e in chunk]})[:20]
        units.append(WorkUnit(index=index, unit_id=unit_id, examples=chunk, seed=seed))
    return units


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

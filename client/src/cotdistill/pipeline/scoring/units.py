"""What a scoring job scores, its identity, and its work units.

A unit is ``unit_size`` consecutive rationales scored in one ``Score`` call. Its id is a hash of
everything that decides its output (the job spec, the unit's index, each rationale's example id,
sample index, prompt and text), so a retried or resumed unit replaces its own shard and nothing
else, exactly as sampling units do (:mod:`cotdistill.pipeline.sampling.units`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cotdistill.pipeline.sampling.units import ExampleRef, WorkUnit, digest

SCORE_JOB_FORMAT = 1
"""Bump when the meaning of a scoring unit changes, so old manifests are not resumed by mistake."""


@dataclass(frozen=True)
class ScoreRef(ExampleRef):
    """One rationale to score: its question's teacher prompt (``prompt``/``chat``) plus the text.

    ``rationale`` is the text as given; ``separator`` goes between the prompt and it (None: one
    space after a prompt that ends in a word, none after whitespace or a fresh assistant turn,
    which is where a sampled rationale would start). The answer fields are carried into the
    shard: a gold rationale's prediction is the gold answer; a shard's keep what its teacher said.
    """

    sample_index: int = 0
    rationale: str = ""
    separator: str | None = None
    dataset: str = ""
    split: str = ""
    answer_text: str | None = None
    prediction: str | None = None
    correct: bool | None = None
    finish_reason: str = "stop"

    def completion(self, use_chat: bool) -> str:
        """The text the teacher scores after its prompt (the rationale, joined as sampled)."""
        if self.separator is not None:
            return self.separator + self.rationale
        if use_chat and self.chat is not None:
            before = self.chat.prefix
            if not before:
                return self.rationale.lstrip()  # a fresh assistant turn starts with the text itself
        else:
            before = self.prompt
        if not before or before[-1].isspace():
            return self.rationale.lstrip()
        # After a word ("... step by step."): a rationale that starts with whitespace (as sampled
        # ones do) stays as it is, one that does not gets the space a sampled one would have.
        return self.rationale if self.rationale[:1].isspace() else " " + self.rationale


@dataclass(frozen=True)
class ScoreParams:
    """The parameters that decide a scoring unit's output (and so its id)."""

    top_k_logprobs: int
    prompt_format: str = "zero_shot_cot"
    prompt_template: str = "auto"  # auto | chat | raw
    system_prompt: str | None = None
    separator: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScoreSpec:
    """Which rationales and how: the identity of a scoring job (see :class:`JobIdentity`)."""

    source: str  # "gold:<dataset>/<split>" or "shards"
    dataset: str
    split: str
    params: ScoreParams
    unit_size: int
    paths: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": SCORE_JOB_FORMAT,
            "kind": "score",
            "source": self.source,
            "dataset": self.dataset,
            "split": self.split,
            "paths": list(self.paths),
            "unit_size": self.unit_size,
            "params": self.params.as_dict(),
        }

    def fingerprint(self) -> str:
        return digest(self.as_dict())


def plan_score_units(refs: Sequence[ScoreRef], spec: ScoreSpec) -> list[WorkUnit]:
    """Cut ``refs`` into units of ``spec.unit_size`` in order (raising ``limit`` keeps earlier ids).

    Raises ValueError when an (example id, sample index) pair repeats: each is one row, stored once.
    """
    if spec.unit_size < 1:
        raise ValueError(f"unit_size: must be >= 1, got {spec.unit_size}")
    seen: set[tuple[str, int]] = set()
    for ref in refs:
        key = (ref.id, ref.sample_index)
        if key in seen:
            raise ValueError(f"(example, sample index) {key} appears twice among the rationales to score")
        seen.add(key)
    base = spec.as_dict()
    units = []
    for index, start in enumerate(range(0, len(refs), spec.unit_size)):
        chunk = tuple(refs[start : start + spec.unit_size])
        content = [[r.id, r.sample_index, r.prompt, r.rationale, r.separator] for r in chunk]
        unit_id = digest({**base, "index": index, "items": content})[:20]
        units.append(WorkUnit(index=index, unit_id=unit_id, examples=chunk))
    return units

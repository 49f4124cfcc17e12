"""The evaluation loop: datasets x formats through one model, with caching and progress.

Independent of gRPC: :func:`run_evaluation` is an async generator of :class:`ProgressEvent`
followed by one :class:`EvaluationOutcome`; the servicer turns them into proto messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.evaluator.backends import GenerationParams, Generator
from cotdistill.evaluator.metrics import EvaluatorMetrics
from cotdistill.evaluator.stats import majority_vote, wilson_interval
from cotdistill.evaluator.suite import LoadedDataset, TaskSuite

RESULT_SCHEMA = "cotdistill.eval/v1"
GROUPS = ("in_distribution", "out_of_distribution", "generic")
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(text: str) -> str:
    """A file-name-safe form of ``text``."""
    return _SLUG.sub("-", text).strip("-")[:80] or "model"


@dataclass(frozen=True)
class DatasetTask:
    """One dataset of a request, loaded, with its group."""

    dataset: LoadedDataset
    group: str


@dataclass
class DatasetOutcome:
    """Accuracy of one (dataset, format); mirrors ``DatasetResult``."""

    dataset: str
    split: str
    format: str
    group: str
    correct: int
    total: int
    accuracy: float
    ci_low: float
    ci_high: float
    predictions_path: str
    cached: bool = False


@dataclass
class EvaluationOutcome:
    """Mirrors ``EvaluationResult`` plus what reports need; saved as the result JSON."""

    label: str
    model_hash: str
    model: str
    backend: str
    step: int
    num_parameters: int
    tags: dict[str, str]
    generation: dict[str, Any]
    results: list[DatasetOutcome]
    group_accuracy: dict[str, float]
    result_path: str = ""
    created_at: str = ""
    elapsed_s: float = 0.0
    schema: str = RESULT_SCHEMA

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProgressEvent:
    """Examples done so far out of the total of the request."""

    done: int
    total: int
    message: str


def group_means(results: Sequence[DatasetOutcome]) -> dict[str, float]:
    """Mean accuracy per group over its (dataset, format) entries; groups without entries are left out.

    An unweighted mean of datasets (not of pooled examples), so a large dataset does not drown
    the others, as in the papers' "average over OOD datasets".
    """
    out: dict[str, float] = {}
    for group in GROUPS:
        accs = [r.accuracy for r in results if r.group == group]
        if accs:
            out[group] = sum(accs) / len(accs)
    return out


def cache_key(model_hash: str, dataset: LoadedDataset, fmt: str, params: GenerationParams) -> str:
    """Hex key of (model content, dataset content, split, examples, format, generation params)."""
    ident = {
        "model": model_hash,
        "dataset": dataset.name,
        "split": dataset.split,
        "fingerprint": dataset.fingerprint,
        "n": len(dataset.examples),
        "format": fmt,
        "generation": params.cache_key(),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


@dataclass
class EvaluationRequest:
    """A validated Evaluate call."""

    label: str
    tasks: list[DatasetTask]
    formats: list[str]
    params: GenerationParams
    output: ArtifactStore
    no_cache: bool = False
    step: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    # Folder of the result JSON under ``output``; Select keeps its dev-set results apart from
    # ``eval/`` so they do not mix with the test-set results in reports.
    result_dir: str = "eval"


async def run_evaluation(
    request: EvaluationRequest,
    generator: Generator,
    suite: TaskSuite,
    cache: ArtifactStore,
    metrics: EvaluatorMetrics,
) -> AsyncIterator[ProgressEvent | EvaluationOutcome]:
    """Evaluate ``generator`` on every (dataset, format) of ``request``.

    Yields a :class:`ProgressEvent` after each generation batch (and each cache hit) and, last,
    the :class:`EvaluationOutcome`, whose JSON is also written under ``request.output``.
    """
    started = time.perf_counter()
    model_hash = generator.content_hash()
    label = request.label or generator.description
    name = slug(f"{label}-{model_hash[:8]}")
    total = sum(len(t.dataset.examples) for t in request.tasks) * len(request.formats)
    done = 0
    results: list[DatasetOutcome] = []
    yield ProgressEvent(0, total, f"evaluating {generator.description}")
    for task in request.tasks:
        ds = task.dataset
        for fmt in request.formats:
            params = GenerationParams(**{**asdict(request.params), "stop": tuple(suite.stop(ds, fmt))})
            key = cache_key(model_hash, ds, fmt, params)
            where = f"{ds.name}/{ds.split} {fmt}"
            pred_rel = (
                request.result_dir,
                "predictions",
                name,
                f"{slug(ds.name)}__{slug(ds.split)}__{slug(fmt)}.jsonl",
            )
            if not request.no_cache and cache.exists("eval-cache", key, "summary.json"):
                summary = cache.read_json("eval-cache", key, "summary.json")
                request.output.write_bytes(cache.read_bytes("eval-cache", key, "predictions.jsonl"), *pred_rel)
                results.append(_outcome(ds, fmt, task.group, summary["correct"], summary["total"], pred_rel, request))
                results[-1].cached = True
                done += len(ds.examples)
                metrics.cache_lookups.labels("hit").inc()
                metrics.examples.labels(generator.kind, "true").inc(len(ds.examples))
                yield ProgressEvent(done, total, f"{where}: cached")
                continue
            metrics.cache_lookups.labels("miss").inc()
            lines: list[str] = []
            correct = 0
            examples = list(ds.examples)
            for start in range(0, len(examples), params.batch_size):
                batch = examples[start : start + params.batch_size]
                prompts = [suite.prompt(ds, ex, fmt) for ex in batch]
                t0 = time.perf_counter()
                completions = await generator.generate(prompts, params)
                elapsed = time.perf_counter() - t0
                metrics.batch_seconds.labels(generator.kind).observe(elapsed)
                for ex, prompt, samples in zip(batch, prompts, completions, strict=True):
                    scored = [suite.score(ds, ex, fmt, text) for text in samples]
                    answer = majority_vote([s.answer for s in scored])
                    ok = suite.correct(ds, ex, answer)
                    correct += ok
                    first = next((s for s in scored if s.answer == answer), scored[0])
                    record: dict[str, Any] = {
                        "id": ex.id,
                        "question": ex.question,
                        "prompt": prompt
                        if isinstance(prompt, str)
                        else {"messages": prompt.as_dicts(), "prefix": prompt.prefix},
                        "completion": samples[0],
                        "rationale": first.rationale,
                        "answer": answer,
                        "gold": ex.gold,
                        "correct": bool(ok),
                    }
                    if len(samples) > 1:
                        record["samples"] = [
                            {"completion": t, "answer": s.answer} for t, s in zip(samples, scored, strict=True)
                        ]
                    lines.append(json.dumps(record, ensure_ascii=False))
                done += len(batch)
                metrics.examples.labels(generator.kind, "false").inc(len(batch))
                if elapsed > 0:
                    metrics.throughput.labels(generator.kind).set(len(batch) / elapsed)
                yield ProgressEvent(done, total, f"{where}: {start + len(batch)}/{len(examples)}")
            body = ("\n".join(lines) + "\n").encode() if lines else b""
            # Predictions first, summary last: a summary in the cache means a complete entry.
            cache.write_bytes(body, "eval-cache", key, "predictions.jsonl")
            cache.write_json(
                {"correct": correct, "total": len(examples), "dataset": ds.name, "split": ds.split, "format": fmt},
                "eval-cache",
                key,
                "summary.json",
            )
            request.output.write_bytes(body, *pred_rel)
            results.append(_outcome(ds, fmt, task.group, correct, len(examples), pred_rel, request))
    outcome = EvaluationOutcome(
        label=label,
        model_hash=model_hash,
        model=generator.description,
        backend=generator.kind,
        step=request.step or generator.step(),
        num_parameters=int(request.tags.get("model_size", 0) or 0) or generator.num_parameters(),
        tags=dict(request.tags),
        generation={k: v for k, v in asdict(request.params).items() if k != "stop"},
        results=results,
        group_accuracy=group_means(results),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        elapsed_s=round(time.perf_counter() - started, 3),
    )
    outcome.result_path = request.output.path(request.result_dir, f"{name}.json")
    request.output.write_json(outcome.to_json(), request.result_dir, f"{name}.json")
    yield outcome


async def evaluate_model(
    request: EvaluationRequest,
    generator: Generator,
    suite: TaskSuite,
    cache: ArtifactStore,
    metrics: EvaluatorMetrics,
) -> AsyncIterator[ProgressEvent | EvaluationOutcome]:
    """Open ``generator``, run :func:`run_evaluation` and close it, counting the evaluation by how
    it ended (succeeded, failed, or cancelled by the client)."""
    state = "failed"
    metrics.running.inc()
    try:
        await generator.open()
        async for event in run_evaluation(request, generator, suite, cache, metrics):
            yield event
        state = "succeeded"
    except (asyncio.CancelledError, GeneratorExit):
        state = "cancelled"
        raise
    finally:
        metrics.running.dec()
        metrics.evaluations.labels(state).inc()
        await generator.close()


def _outcome(
    ds: LoadedDataset, fmt: str, group: str, correct: int, total: int, pred_rel: tuple[str, ...], req: EvaluationRequest
) -> DatasetOutcome:
    low, high = wilson_interval(correct, total)
    return DatasetOutcome(
        dataset=ds.name,
        split=ds.split,
        format=fmt,
        group=group,
        correct=correct,
        total=total,
        accuracy=correct / total if total else 0.0,
        ci_low=low,
        ci_high=high,
        predictions_path=req.output.path(*pred_rel),
    )

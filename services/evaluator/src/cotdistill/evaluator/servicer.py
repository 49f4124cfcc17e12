"""gRPC servicer of the evaluator: validates requests, streams progress, maps errors.

The work is in the domain modules: `evaluation.py` (the evaluation loop, `evaluate_model`) and
`selection.py` (the `Select` workflow, `select`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc

from cotdistill.common import enums
from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import InvalidArgument
from cotdistill.common.grpc_errors import stream_errors, unary_errors
from cotdistill.common.models import is_registry_name
from cotdistill.evaluator.backends import GenerationParams, Generator, check_checkpoint_dir, generator_for
from cotdistill.evaluator.evaluation import (
    DatasetTask,
    EvaluationOutcome,
    EvaluationRequest,
    ProgressEvent,
    evaluate_model,
)
from cotdistill.evaluator.metrics import EvaluatorMetrics
from cotdistill.evaluator.selection import SelectionCandidate, SelectionPlan, Signal, select
from cotdistill.evaluator.settings import EvaluatorSettings
from cotdistill.evaluator.suite import TaskSuite, is_dataset_file
from cotdistill.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc

log = logging.getLogger(__name__)

GROUPS = enums.names(evaluator_pb2.DatasetGroup)
SIGNALS = enums.names(evaluator_pb2.SelectionSignal, drop_suffix="_ACCURACY")


def generation_params(gen: evaluator_pb2.EvalGeneration, field: str = "generation") -> GenerationParams:
    """Apply defaults and range checks; InvalidArgument names the field."""
    max_tokens = gen.max_tokens or 128
    if not 1 <= max_tokens <= 4096:
        raise InvalidArgument(f"{field}.max_tokens", f"must be in 1-4096, got {gen.max_tokens}")
    if not (0.0 <= gen.temperature <= 10.0) or math.isnan(gen.temperature):
        raise InvalidArgument(f"{field}.temperature", f"must be in [0, 10], got {gen.temperature}")
    samples = gen.num_samples or 1
    if not 1 <= samples <= 64:
        raise InvalidArgument(f"{field}.num_samples", f"must be in 1-64, got {gen.num_samples}")
    if samples > 1 and gen.temperature == 0:
        raise InvalidArgument(
            f"{field}.num_samples", "self-consistency (num_samples > 1) needs temperature > 0; greedy samples are equal"
        )
    batch = gen.batch_size or 32
    if not 1 <= batch <= 1024:
        raise InvalidArgument(f"{field}.batch_size", f"must be in 1-1024, got {gen.batch_size}")
    seed = gen.seed if gen.HasField("seed") else None
    return GenerationParams(
        max_tokens=max_tokens, temperature=float(gen.temperature), num_samples=samples, seed=seed, batch_size=batch
    )


class EvaluatorServicer(evaluator_pb2_grpc.EvaluatorServiceServicer):
    """Implements cotdistill.v1.EvaluatorService."""

    def __init__(self, settings: EvaluatorSettings, metrics: EvaluatorMetrics, suite: TaskSuite | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.cache = ArtifactStore(settings.artifacts_dir)
        # Paths in requests (checkpoints, dataset files, output_dir) stay inside these.
        self.read_roots = settings.read_roots()
        self.write_roots = settings.write_roots()
        if suite is None:
            from cotdistill.evaluator.task_suite import RegistrySuite

            suite = RegistrySuite()
        self.suite = suite

    # -- validation ---------------------------------------------------------------------------

    async def _tasks(self, datasets: Any, field: str = "datasets") -> list[DatasetTask]:
        if not datasets:
            raise InvalidArgument(field, "at least one dataset is needed")
        tasks = []
        for i, ds in enumerate(datasets):
            if not ds.name:
                raise InvalidArgument(f"{field}[{i}].name", "must not be empty")
            name = ds.name
            if is_dataset_file(name):
                name = self.read_roots.confine(name, f"{field}[{i}].name")
            loaded = await asyncio.to_thread(
                self.suite.load, name, ds.split or "test", ds.limit or None, field=f"{field}[{i}].name"
            )
            if not loaded.examples:
                raise InvalidArgument(f"{field}[{i}]", f"{ds.name}/{ds.split or 'test'} has no examples")
            tasks.append(DatasetTask(loaded, GROUPS.name(ds.group, "in_distribution")))
        return tasks

    def _formats(self, formats: Any, field: str = "formats") -> list[str]:
        if not formats:
            raise InvalidArgument(field, "at least one prompt format is needed")
        known = list(self.suite.formats())
        for i, fmt in enumerate(formats):
            if fmt not in known:
                raise InvalidArgument(f"{field}[{i}]", f"unknown format {fmt!r}; known: {', '.join(known)}")
        return list(formats)

    def _output(self, output_dir: str) -> ArtifactStore:
        return ArtifactStore(self.write_roots.confine(output_dir, "output_dir")) if output_dir else self.cache

    def _model(self, model: common_pb2.ModelRef, field: str) -> common_pb2.ModelRef:
        """``model`` with its checkpoint path confined and checked (before any work starts)."""
        if model.WhichOneof("source") != "checkpoint_path" or not model.checkpoint_path:
            return model
        if is_registry_name(model.checkpoint_path):
            return model  # not a path: it resolves into the models cache when the model opens
        path = self.read_roots.confine(model.checkpoint_path, f"{field}.checkpoint_path")
        check_checkpoint_dir(path, f"{field}.checkpoint_path")
        return common_pb2.ModelRef(checkpoint_path=path)

    def _generator(self, model: common_pb2.ModelRef, field: str) -> Generator:
        return generator_for(model, device=self.settings.device, torch_threads=self.settings.torch_threads, field=field)

    # -- Evaluate -----------------------------------------------------------------------------

    async def _evaluate(
        self, request: EvaluationRequest, model: common_pb2.ModelRef, field: str = "model"
    ) -> AsyncIterator[ProgressEvent | EvaluationOutcome]:
        """Check the request's size against this service's limit, then evaluate ``model``."""
        total = sum(len(t.dataset.examples) for t in request.tasks) * len(request.formats)
        if total > self.settings.max_examples:
            raise InvalidArgument(
                "datasets", f"{total} questions x formats exceed this service's limit of {self.settings.max_examples}"
            )
        generator = self._generator(model, field)
        async for event in evaluate_model(request, generator, self.suite, self.cache, self.metrics):
            yield event

    @stream_errors
    async def Evaluate(
        self, request: evaluator_pb2.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[evaluator_pb2.EvaluateResponse]:
        if not request.HasField("model"):
            raise InvalidArgument("model", "is required")
        model = self._model(request.model, "model")
        params = generation_params(request.generation)
        formats = self._formats(request.formats)
        tasks = await self._tasks(request.datasets)
        eval_request = EvaluationRequest(
            label=request.label,
            tasks=tasks,
            formats=formats,
            params=params,
            output=self._output(request.output_dir),
            no_cache=request.no_cache,
            step=request.step,
            tags=dict(request.tags),
        )
        async for event in self._evaluate(eval_request, model):
            if isinstance(event, ProgressEvent):
                yield evaluator_pb2.EvaluateResponse(
                    progress=common_pb2.Progress(
                        done=event.done, total=event.total, unit="examples", message=event.message
                    )
                )
            else:
                yield evaluator_pb2.EvaluateResponse(result=to_proto(event))

    # -- Select -------------------------------------------------------------------------------

    @unary_errors
    async def Select(
        self, request: evaluator_pb2.SelectRequest, context: grpc.aio.ServicerContext
    ) -> evaluator_pb2.SelectResponse:
        plan = await self._selection_plan(request)
        selection = await select(plan, self._evaluate)
        self.metrics.selections.labels(plan.signal).inc()
        chosen = evaluator_pb2.Candidate()
        chosen.CopyFrom(request.candidates[selection.chosen])
        return evaluator_pb2.SelectResponse(
            chosen_index=selection.chosen,
            chosen=chosen,
            signal=request.signal or evaluator_pb2.SELECTION_SIGNAL_IN_DISTRIBUTION_ACCURACY,
            table_path=selection.table_path,
            table=[
                evaluator_pb2.SelectionRow(
                    label=r.label,
                    step=r.step,
                    signal_value=r.signal_value,
                    in_distribution_accuracy=r.in_distribution,
                    out_of_distribution_accuracy=r.out_of_distribution,
                    validation_loss=r.validation_loss,
                )
                for r in selection.rows
            ],
        )

    async def _selection_plan(self, request: evaluator_pb2.SelectRequest) -> SelectionPlan:
        """Check the whole request (every candidate's checkpoint included) before anything is evaluated."""
        if not request.candidates:
            raise InvalidArgument("candidates", "at least one candidate is needed")
        if request.signal and request.signal not in SIGNALS.by_value:
            raise InvalidArgument("signal", f"unknown selection signal {request.signal}")
        signal = cast(Signal, SIGNALS.name(request.signal, "in_distribution"))
        if signal == "weighted" and not 0.0 <= request.id_weight <= 1.0:
            raise InvalidArgument("id_weight", f"must be in [0, 1], got {request.id_weight}")
        for i, cand in enumerate(request.candidates):
            if not cand.HasField("model"):
                raise InvalidArgument(f"candidates[{i}].model", "is required")
            if signal == "validation_loss" and not cand.HasField("validation_loss"):
                raise InvalidArgument(
                    f"candidates[{i}].validation_loss", "is required by SELECTION_SIGNAL_VALIDATION_LOSS"
                )
        candidates = [
            SelectionCandidate(
                label=cand.label or f"candidate-{i}",
                step=cand.step,
                model=self._model(cand.model, f"candidates[{i}].model"),
                field=f"candidates[{i}].model",
                validation_loss=cand.validation_loss if cand.HasField("validation_loss") else None,
            )
            for i, cand in enumerate(request.candidates)
        ]
        output = self._output(request.output_dir)
        params = generation_params(request.generation)
        tasks: list[DatasetTask] = []
        if signal != "validation_loss" or len(request.datasets) > 0:
            if not request.format:
                raise InvalidArgument("format", "a prompt format is needed for accuracy signals")
            self._formats([request.format], field="format")
            tasks = await self._tasks(request.datasets)
            groups = {t.group for t in tasks}
            wanted = {"in_distribution": ["in_distribution"], "out_of_distribution": ["out_of_distribution"]}.get(
                signal, ["in_distribution", "out_of_distribution"] if signal == "weighted" else []
            )
            for group in wanted:
                if group not in groups:
                    raise InvalidArgument("datasets", f"signal {signal} needs at least one {group} dataset")
        return SelectionPlan(candidates, signal, request.id_weight, request.format, tasks, params, output)


def to_proto(outcome: EvaluationOutcome) -> evaluator_pb2.EvaluationResult:
    """The proto form of an outcome."""
    return evaluator_pb2.EvaluationResult(
        label=outcome.label,
        model_hash=outcome.model_hash,
        result_path=outcome.result_path,
        step=outcome.step,
        num_parameters=outcome.num_parameters,
        group_accuracy=outcome.group_accuracy,
        results=[
            evaluator_pb2.DatasetResult(
                dataset=r.dataset,
                split=r.split,
                format=r.format,
                group=GROUPS.value(r.group),
                correct=r.correct,
                total=r.total,
                accuracy=r.accuracy,
                ci_low=r.ci_low,
                ci_high=r.ci_high,
                predictions_path=r.predictions_path,
                cached=r.cached,
            )
            for r in outcome.results
        ],
    )

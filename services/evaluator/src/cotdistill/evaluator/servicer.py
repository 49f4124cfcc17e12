"""gRPC servicer of the evaluator: evaluation and model selection."""

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
    run_evaluation,
)
from cotdistill.evaluator.metrics import EvaluatorMetrics
from cotdistill.evaluator.selection import Row, Signal, choose
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
        """Open the model, run the loop, count the outcome by state."""
        total = sum(len(t.dataset.examples) for t in request.tasks) * len(request.formats)
        if total > self.settings.max_examples:
            raise InvalidArgument(
                "datasets", f"{total} questions x formats exceed this service's limit of {self.settings.max_examples}"
            )
        generator = self._generator(model, field)
        state = "failed"
        self.metrics.running.inc()
        try:
            await generator.open()
            async for event in run_evaluation(request, generator, self.suite, self.cache, self.metrics):
                yield event
            state = "succeeded"
        except (asyncio.CancelledError, GeneratorExit):
            state = "cancelled"
            raise
        finally:
            self.metrics.running.dec()
            self.metrics.evaluations.labels(state).inc()
            await generator.close()

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
        # Every candidate's checkpoint is checked before the first one is evaluated.
        models = [self._model(c.model, f"candidates[{i}].model") for i, c in enumerate(request.candidates)]
        output = self._output(request.output_dir)
        needs_eval = signal != "validation_loss" or len(request.datasets) > 0
        tasks: list[DatasetTask] = []
        fmt = request.format
        params = generation_params(request.generation)
        if needs_eval:
            if not fmt:
                raise InvalidArgument("format", "a prompt format is needed for accuracy signals")
            self._formats([fmt], field="format")
            tasks = await self._tasks(request.datasets)
            groups = {t.group for t in tasks}
            wanted = {"in_distribution": ["in_distribution"], "out_of_distribution": ["out_of_distribution"]}.get(
                signal, ["in_distribution", "out_of_distribution"] if signal == "weighted" else []
            )
            for group in wanted:
                if group not in groups:
                    raise InvalidArgument("datasets", f"signal {signal} needs at least one {group} dataset")
        rows: list[Row] = []
        for i, cand in enumerate(request.candidates):
            row = Row(label=cand.label or f"candidate-{i}", step=cand.step)
            if cand.HasField("validation_loss"):
                row.validation_loss = cand.validation_loss
            if needs_eval:
                eval_request = EvaluationRequest(
                    label=row.label,
                    tasks=tasks,
                    formats=[fmt],
                    params=params,
                    output=output,
                    step=cand.step,
                    tags={"role": "student"},
                    result_dir="eval/selection",
                )
                outcome: EvaluationOutcome | None = None
                async for event in self._evaluate(eval_request, models[i], f"candidates[{i}].model"):
                    if isinstance(event, EvaluationOutcome):
                        outcome = event
                assert outcome is not None
                row.in_distribution = outcome.group_accuracy.get("in_distribution")
                row.out_of_distribution = outcome.group_accuracy.get("out_of_distribution")
                if not row.step:
                    row.step = outcome.step
            rows.append(row)
        try:
            chosen = choose(rows, signal, request.id_weight)
        except ValueError as err:
            raise InvalidArgument("datasets", str(err)) from err
        self.metrics.selections.labels(signal).inc()
        table = {
            "signal": signal,
            "id_weight": request.id_weight,
            "format": fmt,
            "chosen_index": chosen,
            "chosen": {
                "label": rows[chosen].label,
                "step": rows[chosen].step,
                "model": _model_json(request.candidates[chosen].model),
            },
            "table": [
                {
                    "label": r.label,
                    "step": r.step,
                    "signal_value": r.signal_value,
                    "in_distribution_accuracy": r.in_distribution,
                    "out_of_distribution_accuracy": r.out_of_distribution,
                    "validation_loss": r.validation_loss,
                    "model": _model_json(c.model),
                }
                for r, c in zip(rows, request.candidates, strict=True)
            ],
        }
        output.write_json(table, "eval", "selection.json")
        chosen_cand = evaluator_pb2.Candidate()
        chosen_cand.CopyFrom(request.candidates[chosen])
        return evaluator_pb2.SelectResponse(
            chosen_index=chosen,
            chosen=chosen_cand,
            signal=request.signal or evaluator_pb2.SELECTION_SIGNAL_IN_DISTRIBUTION_ACCURACY,
            table_path=output.path("eval", "selection.json"),
            table=[
                evaluator_pb2.SelectionRow(
                    label=r.label,
                    step=r.step,
                    signal_value=r.signal_value,
                    in_distribution_accuracy=r.in_distribution,
                    out_of_distribution_accuracy=r.out_of_distribution,
                    validation_loss=r.validation_loss,
                )
                for r in rows
            ],
        )


def _model_json(model: common_pb2.ModelRef) -> dict[str, str]:
    which = model.WhichOneof("source")
    if which == "openai":
        return {"openai": model.openai.base_url, "model": model.openai.model}
    return {which: getattr(model, which)} if which else {}


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

"""Prometheus metrics of the trainer (``cotdistill_trainer_*``), in the service's own registry."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cotdistill.trainer.events import state_name
from cotdistill.v1 import trainer_pb2

# Checkpoint writes: a tiny student in milliseconds, a 0.5B-parameter one in tens of seconds.
CHECKPOINT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

ALL_STATES = [s for s in trainer_pb2.RunState.values() if s != trainer_pb2.RUN_STATE_UNSPECIFIED]


class TrainerMetrics:
    """Training progress, checkpoint timing and run counts.

    Per-run gauges (loss, tokens/s) carry a ``run_id`` label that is removed when the run ends,
    so the label set stays bounded by the number of active runs.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.steps = Counter(
            "cotdistill_trainer_steps_total",
            "Optimizer steps reported by training workers (steps redone after a restart count again).",
            registry=registry,
        )
        self.tokens = Counter(
            "cotdistill_trainer_tokens_total",
            "Training tokens processed across all workers.",
            registry=registry,
        )
        self.tokens_per_second = Gauge(
            "cotdistill_trainer_tokens_per_second",
            "Training throughput of an active run over its last logged interval, all workers, tokens/s.",
            ["run_id"],
            registry=registry,
        )
        self.loss = Gauge(
            "cotdistill_trainer_loss_ratio",
            "Latest training loss of an active run (nats per token, dimensionless).",
            ["run_id"],
            registry=registry,
        )
        self.checkpoint_duration = Histogram(
            "cotdistill_trainer_checkpoint_duration_seconds",
            "Wall time to write and register one checkpoint, seconds.",
            buckets=CHECKPOINT_BUCKETS_S,
            registry=registry,
        )
        self.runs = Gauge(
            "cotdistill_trainer_runs",
            "Run records by state (all runs the service knows, including finished ones).",
            ["state"],
            registry=registry,
        )
        self.runs_finished = Counter(
            "cotdistill_trainer_runs_finished_total",
            "Runs that reached a terminal state in this process, by state.",
            ["state"],
            registry=registry,
        )
        self.worker_starts = Counter(
            "cotdistill_trainer_worker_group_starts_total",
            "Ray Train worker groups started (first attempts and restarts after a worker failure).",
            registry=registry,
        )
        for state in ALL_STATES:
            self.runs.labels(state_name(state)).set(0)

    def set_run_counts(self, counts: Mapping[int, int]) -> None:
        for state in ALL_STATES:
            self.runs.labels(state_name(state)).set(counts.get(state, 0))

    def forget_run(self, run_id: str) -> None:
        for gauge in (self.tokens_per_second, self.loss):
            try:
                gauge.remove(run_id)
            except KeyError:
                pass

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
        self.on_policy_fraction = Gauge(
            "cotdistill_trainer_on_policy_ratio",
            "Share of an active run's optimizer steps over its last logged interval trained on the student's own "
            "samples (GKD's lambda as realized; dimensionless).",
            ["run_id"],
            registry=registry,
        )
        self.score_latency = Gauge(
            "cotdistill_trainer_teacher_score_latency_seconds",
            "Mean latency of the teacher Score calls of an active run's on-policy steps over its last interval, s.",
            ["run_id"],
            registry=registry,
        )
        self.scored_tokens_per_second = Gauge(
            "cotdistill_trainer_teacher_scored_tokens_per_second",
            "Student tokens the teacher scored per second of waiting for Score, last interval, tokens/s.",
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

    def record_step_figures(self, run_id: str, figures: Mapping[str, float]) -> None:
        """On-policy figures of a step event (absent keys leave their gauge alone)."""
        for key, gauge in (
            ("on_policy_fraction", self.on_policy_fraction),
            ("teacher_score_latency_s", self.score_latency),
            ("teacher_scored_tokens_per_second", self.scored_tokens_per_second),
        ):
            if key in figures:
                gauge.labels(run_id).set(float(figures[key]))

    def forget_run(self, run_id: str) -> None:
        for gauge in (
            self.tokens_per_second,
            self.loss,
            self.on_policy_fraction,
            self.score_latency,
            self.scored_tokens_per_second,
        ):
            try:
                gauge.remove(run_id)
            except KeyError:
                pass

"""Prometheus metrics of the evaluator (``cotdistill_evaluator_*``), on the service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class EvaluatorMetrics:
    """Examples, throughput, evaluations by state, cache use, selections."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.examples = Counter(
            "cotdistill_evaluator_examples_total",
            "Questions evaluated, by backend and whether the figure came from the cache.",
            ["backend", "cached"],
            registry=registry,
        )
        self.throughput = Gauge(
            "cotdistill_evaluator_examples_per_second",
            "Questions per second of the last generation batch, by backend.",
            ["backend"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "cotdistill_evaluator_batch_duration_seconds",
            "Wall time of one generation batch (generate + answer extraction), by backend.",
            ["backend"],
            buckets=BATCH_BUCKETS_S,
            registry=registry,
        )
        self.evaluations = Counter(
            "cotdistill_evaluator_evaluations_total",
            "Evaluate calls finished, by final state (succeeded, failed, cancelled).",
            ["state"],
            registry=registry,
        )
        self.running = Gauge(
            "cotdistill_evaluator_evaluations_running",
            "Evaluations in progress now (Evaluate calls and Select candidates).",
            registry=registry,
        )
        self.cache_lookups = Counter(
            "cotdistill_evaluator_cache_lookups_total",
            "Result-cache lookups per (dataset, format), by result (hit, miss).",
            ["result"],
            registry=registry,
        )
        self.selections = Counter(
            "cotdistill_evaluator_selections_total",
            "Select calls answered, by validation signal.",
            ["signal"],
            registry=registry,
        )

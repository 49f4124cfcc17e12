"""Prometheus metrics of the sampling driver: the backlog that wakes a teacher scaled to zero.

A teacher scaled to zero exports nothing, so an autoscaler that reads only teacher metrics can
never bring the first replica up. The driver knows the backlog before any replica answers:
``cotdistill_sampling_units_pending`` is set to the job's unfinished units as soon as the job
starts (before it waits for a teacher), goes down as units are stored, and is 0 when the job
ends. KEDA's ScaledObject for the teacher activates on it (charts/cotdistill).

Opt-in: the listener starts only when ``COTDISTILL_PIPELINE_METRICS_PORT`` is set (the chart's
pipeline Job sets it; a laptop run opens no port).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge

from cotdistill.common.errors import ConfigError
from cotdistill.common.metrics import new_registry, start_metrics_server

PORT_ENV = "COTDISTILL_PIPELINE_METRICS_PORT"
HOST_ENV = "COTDISTILL_PIPELINE_METRICS_HOST"


class SamplingMetrics:
    """The gauges and counters of one driver process, labelled by run name."""

    def __init__(self, registry: CollectorRegistry, run: str) -> None:
        self.registry = registry
        self._pending = Gauge(
            "cotdistill_sampling_units_pending",
            "Work units of the running sampling job not yet stored (set before any teacher answers).",
            ["run"],
            registry=registry,
        ).labels(run=run)
        self._total = Gauge(
            "cotdistill_sampling_units",
            "Work units of the running sampling job, stored or not.",
            ["run"],
            registry=registry,
        ).labels(run=run)
        self._completed = Counter(
            "cotdistill_sampling_units_completed",
            "Work units this driver process sampled and stored.",
            ["run"],
            registry=registry,
        ).labels(run=run)

    def planned(self, total: int, pending: int) -> None:
        self._total.set(total)
        self._pending.set(pending)

    def unit_stored(self) -> None:
        self._completed.inc()
        self._pending.dec()

    def finished(self) -> None:
        """The job is over (done or failed): nothing is pending in this process any more."""
        self._pending.set(0)


def _port_from_env() -> int | None:
    raw = os.environ.get(PORT_ENV, "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{PORT_ENV}={raw!r}: must be a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{PORT_ENV}={raw!r}: must be between 0 and 65535")
    return port


@contextmanager
def serve_from_env(run: str) -> Iterator[SamplingMetrics | None]:
    """Sampling metrics on ``/metrics`` when ``COTDISTILL_PIPELINE_METRICS_PORT`` is set, else None."""
    port = _port_from_env()
    if port is None:
        yield None
        return
    registry = new_registry()
    metrics = SamplingMetrics(registry, run)
    host = os.environ.get(HOST_ENV, "127.0.0.1")
    stop: Callable[[], None]
    _, stop = start_metrics_server(host, port, registry)
    try:
        yield metrics
    finally:
        stop()

"""Prometheus metrics of the model server, named like vLLM's (``vllm:X`` -> ``cotdistill_server_X``).

Where the meaning matches vLLM's, so do name and unit, so dashboards built for vLLM port with a
prefix change: time_to_first_token_seconds, e2e_request_latency_seconds, inter_token_latency_seconds,
request_queue_time_seconds, prompt_tokens_total, generation_tokens_total, request_success_total,
num_requests_running, num_requests_waiting. Ours besides: batch_size (rows per forward pass),
requests_rejected_total, model_reloads_total, model_loaded, and HTTP requests by route and status.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cotdistill.common.metrics import LATENCY_BUCKETS_S

TOKEN_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256)


class ServerMetrics:
    """All metrics of one app instance, registered on its own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.http_requests = Counter(
            "cotdistill_http_requests_total",
            "HTTP requests finished, by route and status.",
            ["route", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "cotdistill_http_request_duration_seconds",
            "HTTP request wall time, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.ttft = Histogram(
            "cotdistill_server_time_to_first_token_seconds",
            "Time from request arrival to its first generated token (queueing included).",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.e2e = Histogram(
            "cotdistill_server_e2e_request_latency_seconds",
            "Time from arrival to the last token of a generation request.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.inter_token = Histogram(
            "cotdistill_server_inter_token_latency_seconds",
            "Time between consecutive outputs of one completion.",
            buckets=TOKEN_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.queue_time = Histogram(
            "cotdistill_server_request_queue_time_seconds",
            "Time a request waited for a free slot (admission queue).",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "cotdistill_server_prompt_tokens", "Prompt tokens processed (once per prompt).", registry=registry
        )
        self.generation_tokens = Counter(
            "cotdistill_server_generation_tokens", "Tokens generated, all completions.", registry=registry
        )
        self.request_success = Counter(
            "cotdistill_server_request_success",
            "Completions finished, by finish reason (stop, length).",
            ["finished_reason"],
            registry=registry,
        )
        self.rejected = Counter(
            "cotdistill_server_requests_rejected",
            "Requests refused before generation, by reason (overloaded, not_ready, unauthorized, timeout, "
            "disconnected, too_long).",
            ["reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "cotdistill_server_batch_size",
            "Rows (completions) in one forward pass of the engine.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.running = Gauge(
            "cotdistill_server_num_requests_running", "Completions in the engine's running batch.", registry=registry
        )
        self.waiting = Gauge(
            "cotdistill_server_num_requests_waiting",
            "Completions admitted or queued that are not in the running batch yet.",
            registry=registry,
        )
        self.reloads = Counter(
            "cotdistill_server_model_reloads",
            "Checkpoint (re)loads, by outcome (loaded, refused).",
            ["outcome"],
            registry=registry,
        )
        self.model_loaded = Gauge(
            "cotdistill_server_model_loaded", "1 when a model is loaded and serving, else 0.", registry=registry
        )

    def track(self, running: Callable[[], float], waiting: Callable[[], float]) -> None:
        """Gauges read at scrape time from the live state."""
        self.running.set_function(running)
        self.waiting.set_function(waiting)

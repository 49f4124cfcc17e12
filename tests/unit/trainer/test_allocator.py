"""The training worker's allocator settings: activations reused from the heap, not faulted in anew."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cotdistill.trainer.ray_runner import WORKER_MALLOC_ENV
from cotdistill.trainer.recipe import MMAP_THRESHOLD_BYTES, TOP_PAD_BYTES

# 40 rounds of allocating, touching and freeing an 8 MiB tensor (a layer's activations in
# miniature): minor page faults over the loop, in a fresh process so the settings are its own.
PROBE = """
import json, resource, sys, torch
from cotdistill.trainer.recipe import tune_allocator
tuned = tune_allocator() if sys.argv[1] == "tuned" else None
torch.empty(1 << 21).fill_(1.0)  # warm up torch's own first-use allocations
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    torch.empty(1 << 21).fill_(1.0)
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(mode: str, env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, env=env, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux only")
def test_tuned_allocator_reuses_heap_memory_for_activations() -> None:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    # glibc's default with trimming forced to 0 (the previous setting): every 8 MiB tensor is a
    # fresh mapping, ~2,048 page faults a round.
    untuned = _faults("plain", {**base, "MALLOC_TRIM_THRESHOLD_": "0"})
    tuned = _faults("tuned", base)
    assert tuned["tuned"] is True
    assert int(untuned["faults"]) > 40 * 1500, untuned
    assert int(tuned["faults"]) < int(untuned["faults"]) / 10, (tuned, untuned)


def test_worker_environment_matches_the_in_process_settings() -> None:
    assert WORKER_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"] == str(MMAP_THRESHOLD_BYTES)
    assert WORKER_MALLOC_ENV["MALLOC_TOP_PAD_"] == str(TOP_PAD_BYTES)
    assert WORKER_MALLOC_ENV["MALLOC_ARENA_MAX"] == "2"

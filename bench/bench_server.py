"""Model server throughput and latency at concurrency 1, 8 and 32 vs one-at-a-time generation.

The server (transformers backend, continuous batching) runs as its own process
(``python -m cotdistill.server``) on loopback; closed-loop clients (``httpx``) keep C requests in
flight and measure each request's wall time. Baseline ("one-at-a-time generation"): the same
server and engine given one request at a time (concurrency 1), so the ratio isolates what
batching buys. For reference the figures also hold in-process ``model.generate`` one request at a
time (no HTTP; transformers' generate loop has more per-step overhead than our engine).
Throughput is generated tokens per second, counting the tokens each request really produced
(up to ``MAX_TOKENS``; a random model may end early at EOS), so every side does the same work.

Run: ``python -m bench.bench_server`` (about 2 minutes on 2 CPU cores).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import write_result

MAX_TOKENS = 48
CONCURRENCY = (1, 8, 32)
REQUESTS = {1: 16, 8: 64, 32: 128}
BASELINE_REQUESTS = 8
KEY = "bench-key-0123456789abcdef"
PROMPTS = [
    "Tom has 3 apples. Tom buys 2 more. How many apples does Tom have? ###",
    'Take the last letters of the words in "Ana Lee" and concatenate them. ###',
    "A coin is heads up. Sam flips the coin. Is the coin still heads up? ###",
    "Mia has 12 books. Mia buys 7 more. How many books does Mia have? ###",
]


def build_model(root: Path) -> Path:
    """A small Llama student (4 layers, hidden 128) with the project's Metaspace tokenizer."""
    from cotdistill.pipeline.tiny_models import build_causal_lm, reasoning_corpus, train_tokenizer

    tok = train_tokenizer(reasoning_corpus(), "metaspace_bpe", 200)
    return build_causal_lm(root / "student", tok, hidden_size=128, num_layers=4, num_heads=4, seed=5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def baseline(model_dir: Path) -> dict[str, float]:
    """One request at a time, in-process ``model.generate`` (sampling at temperature 0.7)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    latencies, tokens = [], 0
    with torch.inference_mode():
        for i in range(BASELINE_REQUESTS + 2):
            ids = torch.tensor([tok(PROMPTS[i % len(PROMPTS)])["input_ids"]])
            start = time.perf_counter()
            out = model.generate(
                ids, max_new_tokens=MAX_TOKENS, do_sample=True, temperature=0.7, pad_token_id=tok.pad_token_id
            )
            if i >= 2:  # first two are warm-up
                latencies.append(time.perf_counter() - start)
                tokens += out.shape[1] - ids.shape[1]
    total = sum(latencies)
    return {
        "tokens_per_s": tokens / total,
        "requests_per_s": len(latencies) / total,
        "p50_s": statistics.median(latencies),
        "p99_s": percentile(latencies, 99),
    }


async def load_level(base: str, concurrency: int, requests: int) -> dict[str, float]:
    """Closed loop: ``concurrency`` workers send ``requests`` completions in total."""
    latencies: list[float] = []
    tokens = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=300, limits=limits
    ) as client:

        async def worker() -> None:
            nonlocal tokens
            while not queue.empty():
                i = queue.get_nowait()
                body = {
                    "model": "cotdistill-student",
                    "prompt": PROMPTS[i % len(PROMPTS)],
                    "max_tokens": MAX_TOKENS,
                    "temperature": 0.7,
                }
                start = time.perf_counter()
                r = await client.post("/v1/completions", json=body)
                latencies.append(time.perf_counter() - start)
                r.raise_for_status()
                tokens += r.json()["usage"]["completion_tokens"]

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "tokens_per_s": tokens / wall,
        "requests_per_s": requests / wall,
        "p50_s": statistics.median(latencies),
        "p99_s": percentile(latencies, 99),
        "requests": requests,
    }


def start_server(model_dir: Path, port: int, log: Any) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "COTDISTILL_SERVER_MODEL": str(model_dir),
        "COTDISTILL_SERVER_PORT": str(port),
        "COTDISTILL_SERVER_API_KEYS": KEY,
        "COTDISTILL_SERVER_MAX_CONCURRENT": "32",
        "COTDISTILL_SERVER_MAX_QUEUE": "256",
        "COTDISTILL_SERVER_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "cotdistill.server"], env=env, stdout=log, stderr=subprocess.STDOUT)


def main() -> None:
    from tests.conftest import free_port

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp))
        base_figures = baseline(model_dir)
        print(f"one-at-a-time generate: {base_figures}", flush=True)
        port = free_port()
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            proc = start_server(model_dir, port, log)
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"server did not start:\n{log_path.read_text()[-3000:]}")
                    time.sleep(0.2)
                asyncio.run(load_level(base, 4, 8))  # warm-up
                levels = {}
                for c in CONCURRENCY:
                    levels[c] = asyncio.run(load_level(base, c, REQUESTS[c]))
                    print(f"server concurrency {c}: {levels[c]}", flush=True)
                metrics = httpx.get(f"{base}/metrics").text
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    batch_mean = _histogram_mean(metrics, "cotdistill_server_batch_size")
    figures: dict[str, Any] = {
        "model": "Llama 4 layers, hidden 128, vocab 200 (random weights)",
        "max_tokens": MAX_TOKENS,
        "generate_one_at_a_time_in_process": base_figures,
        "mean_rows_per_forward_pass": batch_mean,
        # Other work on the machine skews every figure; the 1-minute load average says how much.
        "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
    }
    for c, level in levels.items():
        figures[f"concurrency_{c}"] = {
            **level,
            "x_vs_concurrency_1": level["tokens_per_s"] / levels[1]["tokens_per_s"],
            "x_vs_generate_one_at_a_time": level["tokens_per_s"] / base_figures["tokens_per_s"],
        }
    one_at_a_time = levels[1]
    write_result(
        "server",
        title="Model server throughput at 32 concurrent requests",
        metric="generated tokens/s",
        value=levels[32]["tokens_per_s"],
        baseline_name="same server, one request at a time",
        baseline_value=one_at_a_time["tokens_per_s"],
        goal=">= 4x at concurrency 32 on CPU",
        figures=figures,
    )


def _histogram_mean(text: str, name: str) -> float:
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_sum "):
            total = float(line.split()[1])
        elif line.startswith(f"{name}_count "):
            count = float(line.split()[1])
    return total / count if count else 0.0


if __name__ == "__main__":
    main()

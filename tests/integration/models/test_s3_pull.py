"""`cotdistill models pull s3://...` against a real S3 API on loopback (moto's threaded server).

The chart's `models` init container runs exactly this command with the `models.s3` Secret's keys
and `AWS_ENDPOINT_URL` as its environment; the images carry s3fs for it (deploy/pins.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cotdistill.common.models.cache import MANIFEST
from tests.conftest import free_port

BUCKET = "models"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _upload(endpoint: str, local: Path, prefix: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, **_boto_keys())
    if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=BUCKET)
    names = []
    for path in sorted(local.iterdir()):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.name}")
            names.append(path.name)
    return names


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"],
        "region_name": KEYS["AWS_DEFAULT_REGION"],
    }


def _cli(*args: str, cache: Path, endpoint: str) -> subprocess.CompletedProcess[str]:
    # The init container's environment: the Secret's keys and the endpoint, nothing else of AWS.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(KEYS, AWS_ENDPOINT_URL=endpoint, COTDISTILL_MODELS_CACHE=str(cache), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-c", "from cotdistill.pipeline.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_pull_from_s3_materializes_a_loadable_model(
    s3_endpoint: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    source = tiny_models["student"]
    uploaded = _upload(s3_endpoint, source, "students/tiny")
    assert "config.json" in uploaded and "model.safetensors" in uploaded

    cache = tmp_path / "cache"
    uri = f"s3://{BUCKET}/students/tiny"
    done = _cli("models", "pull", uri, "--name", "tiny-s3", cache=cache, endpoint=s3_endpoint)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path == cache / "tiny-s3"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (path / name).read_bytes() == (source / name).read_bytes(), name
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["source"] == {"uri": uri}
    assert "model.safetensors" in manifest["files"]

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.num_parameters() > 0

    again = _cli("models", "pull", uri, "--name", "tiny-s3", cache=cache, endpoint=s3_endpoint)
    assert again.returncode == 0, again.stderr
    assert "already in the cache" in again.stderr


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (f"s3://{BUCKET}/students/absent", "s3://models/students/absent"),
        ("s3://no-such-bucket/x", "s3://no-such-bucket/x"),
    ],
)
def test_a_missing_s3_source_is_one_clear_line(s3_endpoint: str, tmp_path: Path, uri: str, message: str) -> None:
    done = _cli("models", "pull", uri, cache=tmp_path, endpoint=s3_endpoint)
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / Path(uri).name / "config.json").exists()

"""The chart's RayJob entrypoint trains a recipe on the Ray cluster it is submitted to.

What KubeRay does with a rendered RayJob, minus Kubernetes: a real Ray head (`ray start --head`
with the dashboard, whose Jobs API KubeRay's submitter pod calls with `ray job submit`), the
entrypoint string exactly as the chart renders it (container paths mapped to this test's
folders), submitted through the Jobs API. The entrypoint then starts the trainer service joined
to that cluster (ray_address=auto), runs the recipe's train stage through it, and the checkpoint
and the stage's record land on the "artifacts volume".
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.conftest import VENV_BIN, tool
from tests.unit.deploy.chart import CHART, of_kind, render

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# Lighter Ray for a 2-core machine (see ../shared/notes/STACK.md).
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "1",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "OMP_NUM_THREADS": "1",
}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_the_rayjob_entrypoint_trains_on_the_cluster_it_was_submitted_to(tmp_path: Path) -> None:
    from cotdistill.pipeline.tiny_models import build_causal_lm, reasoning_corpus, train_tokenizer
    from tests.integration.trainer.conftest import arithmetic_jsonl

    tool("ray")
    tokenizer = train_tokenizer(reasoning_corpus(), "metaspace_bpe", 200)
    student = build_causal_lm(tmp_path / "student", tokenizer, hidden_size=64, seed=2)
    data = arithmetic_jsonl(tmp_path / "train.jsonl", n=32)
    recipe = (
        f"name: rayjob-test\ntraining:\n  student: {{model: {student}}}\n"
        f"  data: {{train_paths: [{data}], max_seq_len: 64}}\n"
        "  hyperparameters: {max_steps: 2, batch_size: 4}\n  scaling: {cpus_per_worker: 1}\n"
    )
    values = {
        "trainer": {
            "rayJobs": [{"name": "t1", "recipe": recipe, "overrides": ["training.hyperparameters.learning_rate=0.003"]}]
        }
    }
    rendered = render(values)
    (job,) = of_kind(rendered, "RayJob")
    (config_map,) = [c for c in of_kind(rendered, "ConfigMap") if c["metadata"]["name"] == job["metadata"]["name"]]
    mounted = tmp_path / "rayjob"  # the ConfigMap, as the head mounts it
    mounted.mkdir()
    for name, text in config_map["data"].items():
        (mounted / name).write_text(text)
    assert (mounted / "rayjob_train.py").read_text() == (CHART / "files" / "rayjob_train.py").read_text()
    artifacts = tmp_path / "artifacts"
    entrypoint = job["spec"]["entrypoint"].replace("/etc/cotdistill/rayjob", str(mounted))
    entrypoint = entrypoint.replace("/var/lib/cotdistill/artifacts", str(artifacts))
    assert shlex.split(entrypoint)[0] == "python"

    ray_tmp = Path(os.environ.get("RAY_TMPDIR", tmp_path)) / f"rj{os.getpid()}"
    dashboard, gcs = free_port(), free_port()
    env = {
        **os.environ,
        **RAY_ENV,
        "RAY_TMPDIR": str(ray_tmp),
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",  # the job's `python` is the head's
        "COTDISTILL_TRAINER_RAY_OBJECT_STORE_MB": "80",
        # This cluster, for every process of it: other Ray instances may run on a shared test machine
        # (a KubeRay head pod runs only its own).
        "RAY_ADDRESS": f"127.0.0.1:{gcs}",
    }
    head = subprocess.Popen(
        [
            str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
            "--num-cpus=2", "--object-store-memory=100000000", "--include-dashboard=true",
            f"--temp-dir={ray_tmp}",
        ],
        env=env,
        stdout=(tmp_path / "head.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            try:
                _get_json(f"{base}/api/version")
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head's dashboard did not come up"
                time.sleep(0.5)
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(base)
        submission = client.submit_job(entrypoint=entrypoint)  # what `ray job submit` sends
        deadline = time.monotonic() + 420
        while (status := str(client.get_job_status(submission).value)) not in TERMINAL:
            assert time.monotonic() < deadline, f"the job is still {status}:\n{client.get_job_logs(submission)[-4000:]}"
            time.sleep(1)
        logs = client.get_job_logs(submission)
        assert status == "SUCCEEDED", logs[-6000:]
        assert "rayjob: training succeeded" in logs
        # Trained on this cluster: the trainer joined it rather than starting its own Ray.
        assert "ray_address" not in logs or "auto" in logs
        checkpoints = sorted(artifacts.glob("runs/*/checkpoints/step-*"))
        assert checkpoints and (checkpoints[-1] / "config.json").is_file(), sorted(
            str(p) for p in artifacts.rglob("*")
        )[:40]
        record = json.loads((artifacts / "pipeline" / "rayjob-test" / "training" / "run.json").read_text())
        assert record["spec"]["hyperparameters"]["learningRate"] == pytest.approx(0.003)
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()

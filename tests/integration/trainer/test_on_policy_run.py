"""Both teacher-scoring methods end to end through the real services, from one recipe.

`cotdistill run` with stages [score, filter, train] against a teacher service (tiny teacher,
transformers backend) and the trainer service (Ray): the score stage has the teacher score the
synthetic task's gold rationales (KD on gold rationales), and the train stage trains the tiny
student (another tokenizer) on them with SFT + top-k KD, half of its steps on-policy: the Ray
worker generates with the current student, sends the samples to the teacher's Score over gRPC and
applies the generalized JSD on the aligned top-k.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from cotdistill.common.samples import read_samples, shard_metadata
from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc
from tests.integration.conftest import VENV_BIN, ServiceProcess, grpc_serving, start_service, wait_until
from tests.integration.trainer.conftest import TrainerUnderTest

STEPS, SEED = 4, 0  # seed 0: steps 0, 1 and 3 on-policy, step 2 on the scored rationales


@pytest.fixture(scope="module")
def teacher(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {
        "COTDISTILL_TEACHER_BACKEND": "transformers",
        "COTDISTILL_TEACHER_MODEL": str(tiny_models["teacher"]),
        "COTDISTILL_TEACHER_NUM_THREADS": "1",
        "COTDISTILL_TEACHER_GRACE_PERIOD_S": "1",
    }
    service = start_service("teacher", tmp_path_factory.mktemp("teacher"), env)
    wait_until(lambda: grpc_serving(service.address), 120, "teacher SERVING", service)
    yield service
    service.terminate(timeout_s=10)


def scored_tokens(teacher: ServiceProcess) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{teacher.metrics_port}/metrics", timeout=5).read().decode()
    line = next(line for line in text.splitlines() if line.startswith("cotdistill_teacher_scored_tokens_total "))
    return float(line.split()[1])


def test_score_then_train_with_on_policy_steps_through_the_services(
    teacher: ServiceProcess, trainer: TrainerUnderTest, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    recipe = {
        "name": "scored-onpolicy",
        "output_dir": str(tmp_path / "runs"),
        "stages": ["score", "filter", "train"],
        "teacher": {"addresses": [teacher.address], "connect_timeout_s": 60},
        "scoring": {"dataset": "synthetic_arithmetic", "split": "train", "limit": 16, "top_k_logprobs": 5},
        "training": {
            "trainer_address": trainer.address,
            "student": {"model": str(tiny_models["student"])},
            "objective": {"sft_weight": 1.0, "kd_weight": 1.0},
            "hyperparameters": {"max_steps": STEPS, "batch_size": 4, "learning_rate": 0.003, "seed": SEED},
            "data": {"max_seq_len": 160},
            "scaling": {"cpus_per_worker": 1},
            "on_policy": {"fraction": 0.5, "max_new_tokens": 12, "top_k": 5, "divergence": "jsd"},
        },
    }
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    done = subprocess.run(
        [str(VENV_BIN / "cotdistill"), "run", str(config)], capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    # score: every gold rationale scored once, with the teacher's top-5; filter kept them all.
    run_dir = tmp_path / "runs" / "scored-onpolicy"
    table = read_samples(run_dir / "train")
    assert len(table) == 16 and table.k == 5 and all(table.correct)
    meta = shard_metadata(next((run_dir / "samples").glob("part-*.parquet")))
    assert meta.job["kind"] == "score" and meta.teacher.model_id == str(tiny_models["teacher"])
    assert scored_tokens(teacher) > len(table.token_ids)  # the on-policy steps scored student samples too

    # train: the run's step events say which steps were on-policy and what scoring cost.
    with grpc.insecure_channel(trainer.address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        runs = stub.ListRuns(trainer_pb2.ListRunsRequest(), timeout=30).runs
        run = next(r for r in runs if r.spec.name == "scored-onpolicy")
        assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error
        assert run.spec.on_policy.fraction == 0.5 and list(run.spec.on_policy.teacher_addresses) == [teacher.address]
        events = [
            r.event
            for r in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id), timeout=60)
            if r.event.HasField("step")
        ]
    steps = [e.step for e in events]
    assert [s.step for s in steps] == list(range(1, STEPS + 1))
    assert [s.metrics["on_policy_fraction"] for s in steps] == [1.0, 1.0, 0.0, 1.0]
    for s in steps:
        if s.metrics["on_policy_fraction"]:
            assert s.metrics["on_policy_tokens"] > 0 and s.metrics["teacher_score_latency_s"] > 0
            assert s.metrics["teacher_scored_tokens_per_second"] > 0 and "on_policy_loss" in s.metrics
        else:
            assert "sft" in s.loss_parts and "kd" in s.loss_parts
    assert len(run.checkpoints) >= 1 and (Path(run.checkpoints[-1].path) / "config.json").is_file()

"""``cotdistill train``: recipe -> RunSpec, and start-then-watch against a real gRPC trainer.

The trainer here trains nothing (a scripted executor behind the service's Executor interface);
tests/integration/trainer runs the command against the Ray-backed service.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import InvalidArgument
from cotdistill.pipeline.run_config import RunConfig
from cotdistill.pipeline.train_cli import TrainingFailed, _finish, build_spec, start_and_watch
from cotdistill.trainer.server import build_server
from cotdistill.v1 import trainer_pb2
from tests.unit.trainer_service.test_service_lifecycle import ScriptedExecutor, _accept, _settings


def _config(tmp_path: Path, **training: object) -> RunConfig:
    return RunConfig.model_validate(
        {
            "name": "cli",
            "output_dir": str(tmp_path / "runs"),
            "training": {"student": str(tmp_path / "models" / "s"), **training},
        }
    )


def test_build_spec_maps_every_section(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        objective="sft+kd",
        kd_weight=0.5,
        divergence="jsd",
        jsd_beta=0.3,
        top_k_mass="tail_bucket",
        lora_rank=4,
        train_paths=["data/train.parquet"],
        max_steps=7,
        schedule="linear",
        precision="bf16",
        num_workers=2,
        strategy="fsdp",
        checkpoint_interval_steps=3,
        keep_last=2,
    )
    spec = build_spec(config, ArtifactStore(tmp_path / "runs" / "cli"))
    assert spec.name == "cli"
    assert Path(spec.student.model).is_absolute() and spec.student.model.endswith("models/s")
    assert spec.student.lora.rank == 4
    assert spec.data.train_paths[0].endswith("data/train.parquet") and Path(spec.data.train_paths[0]).is_absolute()
    assert (spec.objective.sft_weight, spec.objective.kd_weight) == (1.0, 0.5)
    assert spec.objective.divergence == trainer_pb2.DIVERGENCE_JSD
    assert spec.objective.top_k_mass == trainer_pb2.TOP_K_MASS_TAIL_BUCKET
    assert spec.hyperparameters.max_steps == 7 and spec.hyperparameters.schedule == trainer_pb2.LR_SCHEDULE_LINEAR
    assert spec.hyperparameters.precision == trainer_pb2.PRECISION_BF16
    assert (spec.scaling.num_workers, spec.scaling.strategy) == (2, trainer_pb2.PARALLEL_STRATEGY_FSDP)
    assert (spec.checkpoints.interval_steps, spec.checkpoints.keep_last) == (3, 2)


def test_on_policy_maps_to_the_runspec_and_defaults_to_the_recipes_teacher(tmp_path: Path) -> None:
    assert build_spec(_config(tmp_path), ArtifactStore(tmp_path)).on_policy.fraction == 0  # off by default
    config = RunConfig.model_validate(
        {
            "name": "cli",
            "output_dir": str(tmp_path / "runs"),
            "teacher": {"addresses": ["10.0.0.1:50051", "10.0.0.2:50051"]},
            "training": {
                "student": "models/s",
                "on_policy": {"fraction": 0.25, "divergence": "reverse_kl", "support": "student_topk", "top_k": 8},
            },
        }
    )
    op = build_spec(config, ArtifactStore(tmp_path)).on_policy
    assert op.fraction == 0.25 and list(op.teacher_addresses) == ["10.0.0.1:50051", "10.0.0.2:50051"]
    assert op.divergence == trainer_pb2.DIVERGENCE_REVERSE_KL and op.top_k == 8
    assert op.support == trainer_pb2.ON_POLICY_SUPPORT_STUDENT_TOPK and op.HasField("temperature")


def test_train_paths_default_to_the_runs_filtered_samples(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "runs" / "cli")
    assert list(build_spec(_config(tmp_path), store).data.train_paths) == []
    store.write_text("{}\n", "samples", "a.jsonl")
    assert build_spec(_config(tmp_path), store).data.train_paths == [store.uri("samples")]
    store.write_text("{}\n", "train", "a.jsonl")
    assert build_spec(_config(tmp_path), store).data.train_paths == [store.uri("train")]


async def test_start_and_watch_follows_the_run_to_its_end(tmp_path: Path) -> None:
    service = await build_server(_settings(tmp_path), executor=ScriptedExecutor(), validate=_accept)
    out = io.StringIO()
    console = Console(file=out, width=120)
    try:
        spec = build_spec(_config(tmp_path), ArtifactStore(tmp_path / "runs" / "cli"))
        run = await start_and_watch(f"127.0.0.1:{service.port}", spec, console)
        assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED and run.step == 4
        _finish(run, console)
        text = out.getvalue()
        assert "accepted" in text and "checkpoint step 4" in text and "succeeded" in text
        assert "loading the student (scripted)" in text  # the phase before the first step

        spec.name = "fail"
        failed = await start_and_watch(f"127.0.0.1:{service.port}", spec, console)
        with pytest.raises(TrainingFailed, match="boom"):
            _finish(failed, console)

        spec.scaling.gpus_per_worker = 2  # without use_gpu: rejected at StartRun
        with pytest.raises(InvalidArgument) as err:
            await start_and_watch(f"127.0.0.1:{service.port}", spec, console)
        assert "scaling.gpus_per_worker" in str(err.value)
    finally:
        await service.stop(0)

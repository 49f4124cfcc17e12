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


def _config(tmp_path: Path, **training: dict[str, object]) -> RunConfig:
    student = {"model": str(tmp_path / "models" / "s"), **training.pop("student", {})}
    return RunConfig.model_validate(
        {"name": "cli", "output_dir": str(tmp_path / "runs"), "training": {"student": student, **training}}
    )


def test_build_spec_maps_every_section(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        objective={
            "sft_weight": 1.0,
            "kd_weight": 0.5,
            "divergence": "jsd",
            "jsd_beta": 0.3,
            "top_k_mass": "tail_bucket",
        },
        student={"lora": {"rank": 4}},
        data={"train_paths": ["data/train.parquet"]},
        hyperparameters={"max_steps": 7, "schedule": "linear", "precision": "bf16"},
        scaling={"num_workers": 2, "strategy": "fsdp"},
        checkpoints={"interval_steps": 3, "keep_last": 2},
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
                "student": {"model": "models/s"},
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


def test_one_set_of_defaults_recipe_to_runspec_to_the_trainers_config(tmp_path: Path) -> None:
    from cotdistill.common import training_spec
    from cotdistill.trainer.config import RecipeConfig

    config = _config(tmp_path, data={"train_paths": ["/d"]})
    spec = build_spec(config, ArtifactStore(tmp_path))
    trainer = RecipeConfig.from_proto(spec, str(tmp_path / "out"))
    for section in training_spec.SECTIONS:
        if section == "on_policy":
            continue  # sent only when on (fraction > 0)
        want = getattr(config.training, section).model_dump()
        assert getattr(trainer, section).model_dump(include=set(want)) == want, section
    hp = trainer.hyperparameters
    assert (hp.learning_rate, hp.batch_size, hp.max_steps) == (pytest.approx(1e-4), 8, 0)
    assert trainer.data.packing is True and hp.max_grad_norm == 1.0


def test_lora_and_on_policy_survive_the_round_trip(tmp_path: Path) -> None:
    from cotdistill.trainer.config import RecipeConfig

    config = _config(
        tmp_path,
        student={"lora": {"rank": 4, "target_modules": ["q_proj"]}},
        on_policy={"fraction": 0.5, "top_k": 5, "temperature": 0.0},
        objective={"sft_weight": 0.0, "kd_weight": 1.0, "divergence": "reverse_kl"},
    )
    trainer = RecipeConfig.from_proto(build_spec(config, ArtifactStore(tmp_path)), "/out")
    assert trainer.student.lora is not None
    assert (trainer.student.lora.rank, trainer.student.lora.alpha, trainer.student.lora.target_modules) == (
        4,
        8.0,
        ["q_proj"],
    )
    assert (trainer.objective.sft_weight, trainer.objective.divergence) == (0.0, "reverse_kl")
    op = trainer.on_policy
    assert (op.fraction, op.top_k, op.temperature, op.teacher_addresses) == (0.5, 5, 0.0, ["127.0.0.1:50051"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("  learning_rate: 0.01", "r.yaml:4: training.learning_rate: moved to training.hyperparameters.learning_rate"),
        ("  checkpoint_interval_steps: 5", "r.yaml:4: training.checkpoint_interval_steps: moved to "
         "training.checkpoints.interval_steps"),
        ("  lora_rank: 8", "r.yaml:4: training.lora_rank: moved to training.student.lora.rank"),
        ("  student: /models/s", "r.yaml:4: training.student: a section like RunSpec.student now: write student: "
         "{model: /models/s}"),
        ("  objective: sft+kd", "r.yaml:4: training.objective: a section like RunSpec.objective now"),
    ],
)  # fmt: skip
def test_old_flat_training_keys_say_where_they_went(tmp_path: Path, line: str, message: str) -> None:
    from cotdistill.common.config import load_config
    from cotdistill.common.errors import ConfigError

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\ntraining:\n  trainer_address: t:1\n{line}\n")
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, recipe)
    assert message in str(err.value)


def test_an_old_flat_key_in_an_override_names_the_override(tmp_path: Path) -> None:
    from cotdistill.common.config import load_config
    from cotdistill.common.errors import ConfigError

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\n")
    with pytest.raises(ConfigError, match="override 'training.max_steps=3': training.max_steps: moved to training.hy"):
        load_config(RunConfig, recipe, ["training.max_steps=3"])

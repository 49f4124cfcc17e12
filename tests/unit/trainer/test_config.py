"""RecipeConfig: proto conversion with documented defaults, and errors that name the field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cotdistill.common.errors import ConfigError, InvalidArgument, NotFound
from cotdistill.trainer.config import RecipeConfig
from cotdistill.v1 import trainer_pb2 as pb
from tests.unit.trainer import synthetic


def test_from_proto_fills_documented_defaults(tmp_path: Path) -> None:
    spec = pb.RunSpec(name="r", student=pb.StudentSpec(model="/m"), data=pb.DataSpec(train_paths=["/d"]))
    config = RecipeConfig.from_proto(spec, str(tmp_path))
    assert config.objective.sft_weight == 1.0 and config.objective.kd_weight == 0.0  # all-zero objective = SFT
    assert config.objective.divergence == "forward_kl" and config.objective.top_k_mass == "renormalize"
    assert config.objective.kd_temperature == 1.0 and config.objective.jsd_beta == 0.5
    hp = config.hyperparameters
    assert (hp.schedule, hp.precision, hp.gradient_accumulation, hp.epochs, hp.max_steps) == (
        "cosine",
        "fp32",
        1,
        1.0,
        0,
    )
    assert hp.learning_rate > 0 and hp.batch_size >= 1
    assert config.student.kind == "auto" and config.student.lora is None and config.data.format == "ft_cot"
    assert config.output_dir == str(tmp_path)


def test_from_proto_maps_every_enum_and_lora() -> None:
    spec = pb.RunSpec(
        student=pb.StudentSpec(
            model="/m", kind=pb.STUDENT_KIND_ENCODER_DECODER, lora=pb.LoraSpec(rank=4, target_modules=["q"])
        ),
        data=pb.DataSpec(train_paths=["/d"], format="fu_zs_cot", answer_only_fraction=0.25, packing=True),
        objective=pb.ObjectiveSpec(
            sft_weight=0.5,
            kd_weight=2,
            divergence=pb.DIVERGENCE_JSD,
            jsd_beta=0.3,
            top_k_mass=pb.TOP_K_MASS_TAIL_BUCKET,
        ),
        hyperparameters=pb.Hyperparameters(
            learning_rate=0.01,
            max_steps=7,
            schedule=pb.LR_SCHEDULE_LINEAR,
            precision=pb.PRECISION_BF16,
            max_grad_norm=0.5,
        ),
        checkpoints=pb.CheckpointSpec(interval_steps=2, keep_last=3, validation_interval_steps=1),
    )
    c = RecipeConfig.from_proto(spec, "/out")
    assert c.student.kind == "encoder_decoder" and c.student.lora is not None
    assert (c.student.lora.rank, c.student.lora.alpha, c.student.lora.target_modules) == (4, 8.0, ["q"])
    assert (c.objective.divergence, c.objective.top_k_mass, c.objective.jsd_beta) == (
        "jsd",
        "tail_bucket",
        pytest.approx(0.3),
    )
    assert (c.hyperparameters.schedule, c.hyperparameters.precision, c.hyperparameters.max_steps) == (
        "linear",
        "bf16",
        7,
    )
    assert (c.checkpoints.interval_steps, c.checkpoints.keep_last) == (2, 3)
    assert c.data.format == "fu_zs_cot" and c.data.answer_only_fraction == 0.25


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            pb.RunSpec(student=pb.StudentSpec(model="/m"), objective=pb.ObjectiveSpec(jsd_beta=1.5)),
            "objective.jsd_beta",
        ),
        (
            pb.RunSpec(student=pb.StudentSpec(model="/m"), hyperparameters=pb.Hyperparameters(learning_rate=2)),
            "hyperparameters.learning_rate",
        ),
        (
            pb.RunSpec(student=pb.StudentSpec(model="/m"), data=pb.DataSpec(answer_only_fraction=1.5)),
            "data.answer_only_fraction",
        ),
        (pb.RunSpec(student=pb.StudentSpec(model="")), "student.model"),
        # An enum value this build does not know (a newer client's) is named, not guessed.
        (
            pb.RunSpec(student=pb.StudentSpec(model="/m"), objective=pb.ObjectiveSpec(divergence=7)),
            "objective.divergence",
        ),
        (
            pb.RunSpec(
                student=pb.StudentSpec(model="/m"), hyperparameters=pb.Hyperparameters(max_steps=2, warmup_steps=5)
            ),
            "hyperparameters",
        ),
    ],
)
def test_from_proto_rejects_out_of_range_values_naming_the_field(spec: pb.RunSpec, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        RecipeConfig.from_proto(spec, "/out")
    assert err.value.field == field


@pytest.fixture
def base(task_models: dict[str, Path], tmp_path: Path, task_tokenizers: dict[str, Any]) -> dict[str, Any]:
    with_topk = synthetic.write_samples(
        tmp_path / "topk" / "a.parquet", synthetic.words(4, 0), task_tokenizers["teacher"]
    )
    without = synthetic.write_samples(tmp_path / "plain" / "a.parquet", synthetic.words(4, 0))
    return {
        "raw": {
            "student": {"model": str(task_models["student"])},
            "data": {"train_paths": [str(without)]},
            "output_dir": str(tmp_path / "o"),
        },
        "with_topk": str(with_topk),
        "teacher_tokenizer": str(task_models["teacher_tokenizer"]),
    }


def _with(raw: dict[str, Any], **sections: dict[str, Any]) -> RecipeConfig:
    data = json.loads(json.dumps(raw))
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return RecipeConfig.model_validate(data)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"student": {"kind": "encoder_decoder"}}, "student.kind", "decoder_only"),
        ({"data": {"train_paths": []}}, "data.train_paths", "empty"),
        ({"data": {"format": "bogus"}}, "data.format", "unknown format"),
        ({"objective": {"kd_weight": 1.0}}, "objective.kd_weight", "no top-k logprobs"),
    ],
)
def test_validate_names_the_runspec_field(
    base: dict[str, Any], change: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message) as err:
        _with(base["raw"], **change).validate()
    assert err.value.field == field


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"student": {"model": "/nowhere"}}, "student.model: no such model directory: /nowhere"),
        ({"data": {"train_paths": ["/nowhere.parquet"]}}, "data.train_paths[0]: no such file or directory"),
        ({"data": {"validation_paths": ["/nowhere"]}}, "data.validation_paths[0]: no such file or directory"),
    ],
)
def test_missing_inputs_are_not_found(base: dict[str, Any], change: dict[str, Any], message: str) -> None:
    with pytest.raises(NotFound, match=re.escape(message)):
        _with(base["raw"], **change).validate()


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("root:x:0:0:root:/root:/bin/bash\n", "passwd.jsonl", "passwd.jsonl:1: not JSON lines"),
        ('{"text": "x"}\n', "rows.jsonl", "rows.jsonl:1: a sample needs 'question'"),
        ("", "empty.jsonl", "no samples (the file is empty)"),
        ("PAR1 not really", "fake.parquet", "not a Parquet sample shard"),
        ("anything", "notes.txt", "expected *.parquet or *.jsonl"),
    ],
)
def test_training_inputs_are_read_before_the_run_is_queued(
    base: dict[str, Any], tmp_path: Path, content: str, name: str, message: str
) -> None:
    bad = tmp_path / name
    bad.write_text(content)
    with pytest.raises(InvalidArgument, match=re.escape(message)) as err:
        _with(base["raw"], data={"train_paths": [str(base["raw"]["data"]["train_paths"][0]), str(bad)]}).validate()
    assert err.value.field == "data.train_paths[1]"


def test_a_parquet_file_without_the_sample_columns_is_refused(base: dict[str, Any], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    with pytest.raises(InvalidArgument, match="not a sample shard \\(missing columns") as err:
        _with(base["raw"], data={"train_paths": [str(other)]}).validate()
    assert err.value.field == "data.train_paths[0]"


def test_kd_needs_a_teacher_tokenizer(base: dict[str, Any]) -> None:
    config = _with(base["raw"], objective={"kd_weight": 1.0}, data={"train_paths": [base["with_topk"]]})
    with pytest.raises(InvalidArgument) as err:
        config.validate()
    assert err.value.field == "data.teacher_tokenizer"
    _with(
        base["raw"],
        objective={"kd_weight": 1.0},
        data={"train_paths": [base["with_topk"]], "teacher_tokenizer": base["teacher_tokenizer"]},
    ).validate()


def test_yaml_recipe_errors_carry_file_and_line(tmp_path: Path) -> None:
    from cotdistill.common.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text("student:\n  model: /m\noutput_dir: /o\nobjective:\n  divergence: forward_kl\n  jsd_beta: 3\n")
    with pytest.raises(ConfigError, match=r"run.yaml:6: objective.jsd_beta"):
        load_config(RecipeConfig, path)


def test_on_policy_spec_defaults_and_checks() -> None:
    off = RecipeConfig.from_proto(pb.RunSpec(student=pb.StudentSpec(model="/m")), "/out")
    assert not off.on_policy.enabled and off.on_policy.divergence == "jsd"
    spec = pb.RunSpec(
        student=pb.StudentSpec(model="/m"),
        on_policy=pb.OnPolicySpec(
            fraction=0.5, teacher_addresses=["t:1"], support=pb.ON_POLICY_SUPPORT_STUDENT_TOPK, temperature=0.0
        ),
    )
    op = RecipeConfig.from_proto(spec, "/out").on_policy
    assert (op.fraction, op.teacher_addresses, op.support) == (0.5, ["t:1"], "student_topk")
    assert (op.divergence, op.jsd_beta, op.top_k, op.max_new_tokens, op.temperature) == ("jsd", 0.5, 20, 128, 0.0)
    assert (op.concurrency, op.timeout_s, op.max_attempts) == (4, 120.0, 4)
    spec.on_policy.divergence = pb.DIVERGENCE_REVERSE_KL
    assert RecipeConfig.from_proto(spec, "/out").on_policy.divergence == "reverse_kl"
    del spec.on_policy.teacher_addresses[:]
    with pytest.raises(InvalidArgument) as err:
        RecipeConfig.from_proto(spec, "/out")
    assert err.value.field == "on_policy" and "teacher_addresses" in str(err.value)
    spec.on_policy.teacher_addresses.append("t:1")
    spec.on_policy.fraction = 1.5
    with pytest.raises(InvalidArgument) as err:
        RecipeConfig.from_proto(spec, "/out")
    assert err.value.field == "on_policy.fraction"

"""Typed configuration of one training run: the RunSpec's sections as the service runs them.

The sections, their names and defaults are :mod:`cotdistill.common.training_spec` (the same the
recipe's ``training`` section uses); this module adds what only the service knows: the student
model is required, samples known to be wrong are dropped, on-policy training needs teacher
replicas. An error names the same path in YAML and in gRPC, e.g.
``objective.kd_weight: > 0 but the samples carry no top-k logprobs``. Range checks that need
nothing but the values live in pydantic validators; checks that touch the disk (model
directory, data files: each one's header is read) are in :meth:`RecipeConfig.validate`. A
missing file is NOT_FOUND, one that is there but unusable INVALID_ARGUMENT; that every path lies
under the service's roots is checked before, by the run manager.

Run it standalone with ``python -m cotdistill.trainer.recipe CONFIG.yaml [key=value ...]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from cotdistill.common import training_spec
from cotdistill.common.errors import InvalidArgument, NotFound
from cotdistill.common.training_spec import StudentKind

if TYPE_CHECKING:
    from cotdistill.trainer.data import TrainingData
    from cotdistill.v1 import trainer_pb2


class StudentConfig(training_spec.StudentConfig):
    """The model to fine-tune: a Hugging Face model directory (or an id in the local cache)."""

    model: str = Field(..., min_length=1)


class DataConfig(training_spec.DataConfig):
    """Teacher samples (Parquet shards or JSONL) and how to turn them into student examples."""

    only_correct: bool = Field(True, description="drop samples whose prediction is known to be wrong")


class OnPolicyConfig(training_spec.OnPolicyConfig):
    """On-policy distillation (GKD) as the workers run it (see :mod:`cotdistill.trainer.rollouts`):
    the replicas to call are known by now (the CLI fills the recipe's teacher)."""

    @model_validator(mode="after")
    def _addresses_when_on(self) -> OnPolicyConfig:
        if self.fraction > 0 and not self.teacher_addresses:
            raise ValueError("fraction > 0 needs teacher_addresses (the teacher replicas to call Score on)")
        return self


def model_dir(ref: str, field: str, *, need_weights: bool = True) -> str:
    """A registry name (or GGUF file) as the directory it materializes to; paths stay as given."""
    from cotdistill.common.errors import NotFound
    from cotdistill.common.models import is_registry_name, resolve_model

    if not ref or not (is_registry_name(ref) or ref.lower().endswith(".gguf")):
        return ref
    try:
        return str(resolve_model(ref, need_weights=need_weights))
    except (NotFound, InvalidArgument) as err:
        raise InvalidArgument(field, str(err)) from None


class RecipeConfig(training_spec.SpecSections):
    """Everything one training run needs (the RunSpec's sections), plus where to write it."""

    name: str = ""
    student: StudentConfig
    data: DataConfig = Field(default_factory=DataConfig)
    on_policy: OnPolicyConfig = Field(default_factory=OnPolicyConfig)
    output_dir: str = Field(..., min_length=1)
    log_every_steps: int = Field(1, ge=1, description="Reporter.on_step cadence")
    num_threads: int = Field(0, ge=0, description="torch CPU threads; 0 leaves torch's default")

    # ---- proto conversion -------------------------------------------------------------------

    @classmethod
    def from_proto(cls, spec: trainer_pb2.RunSpec, output_dir: str) -> RecipeConfig:
        """Convert a RunSpec, filling proto3 zeros with the defaults the proto documents.

        Raises InvalidArgument naming the RunSpec field when a value is out of range.
        """
        from pydantic import ValidationError

        raw = training_spec.proto_to_dict(spec)
        student, data = raw.setdefault("student", {}), raw.setdefault("data", {})
        student["model"] = model_dir(student.get("model", ""), "student.model")
        student["tokenizer"] = model_dir(student.get("tokenizer", ""), "student.tokenizer", need_weights=False)
        data["teacher_tokenizer"] = model_dir(
            data.get("teacher_tokenizer", ""), "data.teacher_tokenizer", need_weights=False
        )
        try:
            return cls.model_validate({**raw, "output_dir": output_dir}, context=training_spec.FROM_PROTO)
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "spec"
            raise InvalidArgument(loc, first["msg"].removeprefix("Value error, ")) from None

    # ---- checks that touch the disk ---------------------------------------------------------

    def validate(self) -> TrainingData:  # type: ignore[override]  # pydantic's classmethod `validate` is deprecated
        """Check what needs the file system, naming the RunSpec field; returns what the training
        data held (read once: :func:`~cotdistill.trainer.data.inspect_training_data`).

        Raises:
            NotFound: a model directory or data file is not there.
            InvalidArgument: one is there but is not what the field needs.
        """
        model_dir = Path(self.student.model)
        if not model_dir.exists():
            raise NotFound(f"student.model: no such model directory: {self.student.model}")
        if not (model_dir / "config.json").is_file():
            raise InvalidArgument("student.model", f"no model directory (config.json) at {self.student.model}")
        if self.student.tokenizer and not Path(self.student.tokenizer).is_dir():
            raise InvalidArgument("student.tokenizer", f"no tokenizer directory at {self.student.tokenizer}")
        try:
            kind = detect_kind(model_dir)
        except (OSError, ValueError) as err:
            raise InvalidArgument("student.model", f"{model_dir / 'config.json'} does not parse ({err})") from None
        if self.student.kind != "auto" and kind != self.student.kind:
            raise InvalidArgument("student.kind", f"{self.student.kind} but {model_dir} is {kind}")
        if not self.data.train_paths:
            raise InvalidArgument("data.train_paths", "empty: at least one sample shard or JSONL file is needed")
        from cotdistill.trainer.data import inspect_training_data

        train = inspect_training_data(self.data.train_paths, "data.train_paths")
        inspect_training_data(self.data.validation_paths, "data.validation_paths")
        if self.data.teacher_tokenizer and not Path(self.data.teacher_tokenizer).is_dir():
            raise InvalidArgument("data.teacher_tokenizer", f"no tokenizer directory at {self.data.teacher_tokenizer}")
        if self.data.format not in known_formats():
            raise InvalidArgument(
                "data.format", f"unknown format {self.data.format!r}; known: {sorted(known_formats())}"
            )
        if self.objective.kd_weight > 0:
            self._validate_kd_inputs(train)
        if self.on_policy.enabled and kind == "encoder_decoder":
            raise InvalidArgument("on_policy.fraction", "on-policy training needs a decoder-only student")
        return train

    def _validate_kd_inputs(self, train: TrainingData) -> None:
        """Distribution matching needs top-k logprobs and a way to the teacher's tokenizer."""
        from cotdistill.trainer.data import teacher_tokenizer_ref

        if train.top_k == 0:
            raise InvalidArgument(
                "objective.kd_weight",
                "> 0 but the samples carry no top-k logprobs "
                "(sample with sampling.top_k_logprobs > 0, or set kd_weight to 0)",
            )
        ref = teacher_tokenizer_ref(self.data.teacher_tokenizer, train.metadata.teacher)
        if ref.path is not None:
            return
        if ref.content_hash is not None:
            from cotdistill.common.lm import tokenizer_content_hash
            from cotdistill.common.lm.loading import load_tokenizer

            student = load_tokenizer(self.student.tokenizer or self.student.model)
            if tokenizer_content_hash(student) == ref.content_hash:
                return  # the teacher used the student's tokenizer: no alignment needed
        raise InvalidArgument(
            "data.teacher_tokenizer",
            "objective.kd_weight > 0 and the samples name no local teacher tokenizer (nor the student's): "
            "set data.teacher_tokenizer",
        )


def detect_kind(model_dir: str | Path) -> StudentKind:
    """``encoder_decoder`` for T5-style configs, ``decoder_only`` otherwise."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return "encoder_decoder" if config.get("is_encoder_decoder") else "decoder_only"


def known_formats() -> set[str]:
    """Student formats the data module can render."""
    from cotdistill.trainer.data import available_formats

    return available_formats()

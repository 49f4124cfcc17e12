"""Typed configuration of one training run: the recipe's view of ``trainer.proto`` RunSpec.

Field names and sections mirror the proto (``student``, ``data``, ``objective``,
``hyperparameters``, ``checkpoints``) so an error names the same path in YAML and in gRPC, e.g.
``objective.kd_weight: > 0 but the samples carry no top-k logprobs``. Range checks that need
nothing but the values live in pydantic validators; checks that touch the disk (model
directory, data files: each one's header is read) are in :meth:`RecipeConfig.validate`. A
missing file is NOT_FOUND, one that is there but unusable INVALID_ARGUMENT; that every path lies
under the service's roots is checked before, by the run manager.

Run it standalone with ``python -m cotdistill.trainer.recipe CONFIG.yaml [key=value ...]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cotdistill.common.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from cotdistill.v1 import trainer_pb2

StudentKind = Literal["auto", "decoder_only", "encoder_decoder"]
DivergenceName = Literal["forward_kl", "reverse_kl", "jsd"]
TopKMassName = Literal["renormalize", "tail_bucket"]
ScheduleName = Literal["cosine", "linear", "constant"]
PrecisionName = Literal["fp32", "bf16"]

DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_BATCH_SIZE = 8
DEFAULT_LORA_RANK = 8
DEFAULT_JSD_BETA = 0.5


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraConfig(_Section):
    """LoRA adapters (peft) instead of a full fine-tune."""

    rank: int = Field(DEFAULT_LORA_RANK, ge=1, le=512, description="adapter rank")
    alpha: float = Field(2.0 * DEFAULT_LORA_RANK, gt=0, description="scaling numerator (alpha / rank)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] = Field(default_factory=list, description="module names; empty = all linear")


class StudentConfig(_Section):
    """The model to fine-tune: a Hugging Face model directory (or an id in the local cache)."""

    model: str = Field(..., min_length=1)
    tokenizer: str = Field("", description="tokenizer directory; empty means the model's")
    kind: StudentKind = "auto"
    lora: LoraConfig | None = None


class DataConfig(_Section):
    """Teacher samples (Parquet shards or JSONL) and how to turn them into student examples."""

    train_paths: list[str] = Field(default_factory=list)
    validation_paths: list[str] = Field(default_factory=list)
    format: str = Field("ft_cot", description="student completion format")
    answer_only_fraction: float = Field(0.0, ge=0, le=1, description="Flan-style answer-only mixture")
    max_seq_len: int = Field(0, ge=0, description="longest example in tokens; 0 = model maximum")
    packing: bool = True
    teacher_tokenizer: str = Field("", description="teacher tokenizer dir; empty = the samples' manifest")
    only_correct: bool = Field(True, description="drop samples whose prediction is known to be wrong")


class ObjectiveConfig(_Section):
    """Weighted sum of sample matching (token NLL) and top-k distribution matching."""

    sft_weight: float = Field(1.0, ge=0)
    kd_weight: float = Field(0.0, ge=0)
    divergence: DivergenceName = "forward_kl"
    jsd_beta: float = Field(DEFAULT_JSD_BETA, gt=0, lt=1)
    top_k_mass: TopKMassName = "renormalize"
    kd_temperature: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _some_loss(self) -> ObjectiveConfig:
        if self.sft_weight == 0 and self.kd_weight == 0:
            raise ValueError("sft_weight and kd_weight are both 0: nothing to train on")
        return self


class HyperparametersConfig(_Section):
    """Optimizer (AdamW) and loop settings."""

    learning_rate: float = Field(DEFAULT_LEARNING_RATE, gt=0, le=1)
    max_steps: int = Field(0, ge=0, description="optimizer steps; 0 = derive from epochs")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, description="sequences per micro-batch per worker")
    gradient_accumulation: int = Field(1, ge=1)
    warmup_steps: int = Field(0, ge=0)
    schedule: ScheduleName = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="0 disables clipping")
    precision: PrecisionName = "fp32"
    gradient_checkpointing: bool = False
    loss_chunk_tokens: int = Field(
        0, ge=0, description="supervised positions per LM-head/loss chunk; 0 = about 64 MiB of fp32 logits"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _warmup_fits(self) -> HyperparametersConfig:
        if self.max_steps and self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) > max_steps ({self.max_steps})")
        return self


class CheckpointConfig(_Section):
    """Checkpoint and validation cadence."""

    interval_steps: int = Field(0, ge=0, description="0 = only at the end")
    keep_last: int = Field(0, ge=0, description="0 = keep all")
    validation_interval_steps: int = Field(0, ge=0, description="0 = at checkpoints only")
    evaluator_address: str = ""


class OnPolicyConfig(_Section):
    """On-policy distillation (GKD): a share of the steps trains on the student's own samples,
    scored by the teacher replicas (``RunSpec.on_policy``; see :mod:`cotdistill.trainer.rollouts`)."""

    fraction: float = Field(0.0, ge=0, le=1, description="share of optimizer steps on student samples (lambda)")
    teacher_addresses: list[str] = Field(default_factory=list, description="teacher replicas (host:port, dns:///)")
    divergence: DivergenceName = "jsd"
    jsd_beta: float = Field(DEFAULT_JSD_BETA, gt=0, lt=1)
    top_k: int = Field(20, ge=1, le=20, description="candidates per position")
    support: Literal["teacher_topk", "student_topk"] = "teacher_topk"
    max_new_tokens: int = Field(128, ge=1, le=4096, description="tokens the student generates per sample")
    temperature: float = Field(1.0, ge=0, le=10, description="the student's sampling temperature")
    concurrency: int = Field(4, ge=1, le=64, description="Score calls in flight per worker")
    timeout_s: float = Field(120.0, gt=0, description="deadline of one Score call")
    max_attempts: int = Field(4, ge=1, le=20, description="tries per Score call, on other replicas")

    @model_validator(mode="after")
    def _addresses_when_on(self) -> OnPolicyConfig:
        if self.fraction > 0 and not self.teacher_addresses:
            raise ValueError("fraction > 0 needs teacher_addresses (the teacher replicas to call Score on)")
        return self

    @property
    def enabled(self) -> bool:
        return self.fraction > 0


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


class RecipeConfig(_Section):
    """Everything one training run needs, plus where to write it."""

    name: str = ""
    student: StudentConfig
    data: DataConfig = Field(default_factory=DataConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    hyperparameters: HyperparametersConfig = Field(default_factory=HyperparametersConfig)
    checkpoints: CheckpointConfig = Field(default_factory=CheckpointConfig)
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

        from cotdistill.v1 import trainer_pb2 as pb

        lora = None
        if spec.student.HasField("lora"):
            lspec = spec.student.lora
            rank = lspec.rank or DEFAULT_LORA_RANK
            lora = {
                "rank": rank,
                "alpha": lspec.alpha or 2.0 * rank,
                "dropout": lspec.dropout,
                "target_modules": list(lspec.target_modules),
            }
        kinds = {
            pb.STUDENT_KIND_UNSPECIFIED: "auto",
            pb.STUDENT_KIND_DECODER_ONLY: "decoder_only",
            pb.STUDENT_KIND_ENCODER_DECODER: "encoder_decoder",
        }
        divergences = {
            pb.DIVERGENCE_UNSPECIFIED: "forward_kl",
            pb.DIVERGENCE_FORWARD_KL: "forward_kl",
            pb.DIVERGENCE_REVERSE_KL: "reverse_kl",
            pb.DIVERGENCE_JSD: "jsd",
        }
        masses = {
            pb.TOP_K_MASS_UNSPECIFIED: "renormalize",
            pb.TOP_K_MASS_RENORMALIZE: "renormalize",
            pb.TOP_K_MASS_TAIL_BUCKET: "tail_bucket",
        }
        schedules = {
            pb.LR_SCHEDULE_UNSPECIFIED: "cosine",
            pb.LR_SCHEDULE_COSINE: "cosine",
            pb.LR_SCHEDULE_LINEAR: "linear",
            pb.LR_SCHEDULE_CONSTANT: "constant",
        }
        precisions = {pb.PRECISION_UNSPECIFIED: "fp32", pb.PRECISION_FP32: "fp32", pb.PRECISION_BF16: "bf16"}
        obj, hp, ck, data = spec.objective, spec.hyperparameters, spec.checkpoints, spec.data
        sft_weight = obj.sft_weight
        if sft_weight == 0 and obj.kd_weight == 0:
            sft_weight = 1.0  # an all-zero objective means "plain SFT", the documented default use
        raw = {
            "name": spec.name,
            "student": {
                "model": model_dir(spec.student.model, "student.model"),
                "tokenizer": model_dir(spec.student.tokenizer, "student.tokenizer", need_weights=False),
                "kind": kinds.get(spec.student.kind, "auto"),
                "lora": lora,
            },
            "data": {
                "train_paths": list(data.train_paths),
                "validation_paths": list(data.validation_paths),
                "format": data.format or "ft_cot",
                "answer_only_fraction": data.answer_only_fraction,
                "max_seq_len": data.max_seq_len,
                "packing": data.packing,
                "teacher_tokenizer": model_dir(data.teacher_tokenizer, "data.teacher_tokenizer", need_weights=False),
            },
            "objective": {
                "sft_weight": sft_weight,
                "kd_weight": obj.kd_weight,
                "divergence": divergences.get(obj.divergence, "forward_kl"),
                "jsd_beta": obj.jsd_beta or DEFAULT_JSD_BETA,
                "top_k_mass": masses.get(obj.top_k_mass, "renormalize"),
                "kd_temperature": obj.kd_temperature or 1.0,
            },
            "hyperparameters": {
                "learning_rate": hp.learning_rate or DEFAULT_LEARNING_RATE,
                "max_steps": hp.max_steps,
                "epochs": hp.epochs or 1.0,
                "batch_size": hp.batch_size or DEFAULT_BATCH_SIZE,
                "gradient_accumulation": hp.gradient_accumulation or 1,
                "warmup_steps": hp.warmup_steps,
                "schedule": schedules.get(hp.schedule, "cosine"),
                "weight_decay": hp.weight_decay,
                "max_grad_norm": hp.max_grad_norm,
                "precision": precisions.get(hp.precision, "fp32"),
                "gradient_checkpointing": hp.gradient_checkpointing,
                "loss_chunk_tokens": hp.loss_chunk_tokens,
                "seed": hp.seed,
            },
            "checkpoints": {
                "interval_steps": ck.interval_steps,
                "keep_last": ck.keep_last,
                "validation_interval_steps": ck.validation_interval_steps,
                "evaluator_address": ck.evaluator_address,
            },
            "on_policy": _on_policy(spec.on_policy, divergences),
            "output_dir": output_dir,
        }
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "spec"
            raise InvalidArgument(loc, first["msg"].removeprefix("Value error, ")) from None

    # ---- checks that touch the disk ---------------------------------------------------------

    def validate(self) -> None:  # type: ignore[override]  # pydantic's classmethod `validate` is deprecated
        """Check what needs the file system, naming the RunSpec field.

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
        from cotdistill.trainer.data import check_sample_files

        check_sample_files(self.data.train_paths, "data.train_paths")
        check_sample_files(self.data.validation_paths, "data.validation_paths")
        if self.data.teacher_tokenizer and not Path(self.data.teacher_tokenizer).is_dir():
            raise InvalidArgument("data.teacher_tokenizer", f"no tokenizer directory at {self.data.teacher_tokenizer}")
        if self.data.format not in known_formats():
            raise InvalidArgument(
                "data.format", f"unknown format {self.data.format!r}; known: {sorted(known_formats())}"
            )
        if self.objective.kd_weight > 0:
            self._validate_kd_inputs()
        if self.on_policy.enabled and kind == "encoder_decoder":
            raise InvalidArgument("on_policy.fraction", "on-policy training needs a decoder-only student")

    def _validate_kd_inputs(self) -> None:
        """Distribution matching needs top-k logprobs and a way to the teacher's tokenizer."""
        from cotdistill.trainer.data import first_shard_metadata, peek_top_k, teacher_tokenizer_ref

        if peek_top_k(self.data.train_paths) == 0:
            raise InvalidArgument("objective.kd_weight", "> 0 but the samples carry no top-k logprobs")
        ref = teacher_tokenizer_ref(self.data.teacher_tokenizer, first_shard_metadata(self.data.train_paths))
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


def _on_policy(spec: trainer_pb2.OnPolicySpec, divergences: Mapping[Any, str]) -> dict[str, object]:
    """OnPolicySpec with the defaults its comments document (proto3 zeros mean "default")."""
    from cotdistill.v1 import trainer_pb2 as pb

    supports = {pb.ON_POLICY_SUPPORT_STUDENT_TOPK: "student_topk"}
    return {
        "fraction": spec.fraction,
        "teacher_addresses": list(spec.teacher_addresses),
        "divergence": "jsd" if spec.divergence == pb.DIVERGENCE_UNSPECIFIED else divergences[spec.divergence],
        "jsd_beta": spec.jsd_beta or DEFAULT_JSD_BETA,
        "top_k": spec.top_k or 20,
        "support": supports.get(spec.support, "teacher_topk"),
        "max_new_tokens": spec.max_new_tokens or 128,
        "temperature": spec.temperature if spec.HasField("temperature") else 1.0,
        "concurrency": spec.concurrency or 4,
        "timeout_s": spec.timeout_s or 120.0,
        "max_attempts": spec.max_attempts or 4,
    }


def detect_kind(model_dir: str | Path) -> StudentKind:
    """``encoder_decoder`` for T5-style configs, ``decoder_only`` otherwise."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return "encoder_decoder" if config.get("is_encoder_decoder") else "decoder_only"


def known_formats() -> set[str]:
    """Student formats the data module can render."""
    from cotdistill.trainer.data import available_formats

    return available_formats()

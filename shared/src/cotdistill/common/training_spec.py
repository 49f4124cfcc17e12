"""One training run's settings as typed config: the shape, names and defaults of ``RunSpec``.

The sections mirror ``trainer.proto``'s ``RunSpec`` field by field (``student``, ``data``,
``objective``, ``hyperparameters``, ``scaling``, ``checkpoints``, ``on_policy``). The recipe's
``training`` section (the client, :mod:`cotdistill.pipeline.run_config`) and the trainer's
``RecipeConfig`` (the service) are both built from them, so a field has one name and one default
in YAML, in gRPC and in the training loop, and an error names the same path everywhere
(``hyperparameters.learning_rate``). Conversion is protobuf's JSON mapping, not field-by-field
code: :func:`to_proto` (``ParseDict``) and :func:`proto_to_dict` (``MessageToDict``); enums are
the short names of :mod:`cotdistill.common.enums`.

proto3 scalars have no "unset": where ``trainer.proto`` says "0 means <default>", the field is
annotated :data:`ZeroIsDefault`, which replaces a zero with the field's default only while a
``RunSpec`` is read (validation context :data:`FROM_PROTO`). A YAML recipe that writes
``learning_rate: 0`` still gets the range error. A ``*_UNSPECIFIED`` enum is the field's default
the same way.

Defaults: learning rate 1e-4 and batch size 8 are the trainer service's (what every gRPC client
that leaves them unset has always trained with, and what the real-model recipes set);
``max_steps`` 0 derives the steps from ``epochs`` as ``Hyperparameters.max_steps`` documents.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from google.protobuf.json_format import MessageToDict, ParseDict
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticUseDefault

from cotdistill.common import enums
from cotdistill.common.samples import MAX_TOP_K
from cotdistill.v1 import trainer_pb2

StudentKind = Literal["auto", "decoder_only", "encoder_decoder"]
Divergence = Literal["forward_kl", "reverse_kl", "jsd"]
TopKMass = Literal["renormalize", "tail_bucket"]
Schedule = Literal["cosine", "linear", "constant"]
Precision = Literal["fp32", "bf16"]
Strategy = Literal["ddp", "fsdp"]
OnPolicySupport = Literal["teacher_topk", "student_topk"]

DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_BATCH_SIZE = 8
DEFAULT_LORA_RANK = 8
DEFAULT_JSD_BETA = 0.5

FROM_PROTO: Final = {"from_proto": True}
"""Validation context of a RunSpec read: proto3 zeros mean "the default" where marked."""


def _zero_is_default(value: Any, info: ValidationInfo) -> Any:
    if not value and info.context and info.context.get("from_proto"):
        raise PydanticUseDefault()
    return value


ZeroIsDefault = BeforeValidator(_zero_is_default)
"""Marks a field whose proto zero means its default ("0 means 1" in trainer.proto)."""


class Section(BaseModel):
    """Base of every section: unknown keys are rejected, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraConfig(Section):
    """LoRA adapters (peft) instead of a full fine-tune (``RunSpec.student.lora``)."""

    rank: Annotated[int, ZeroIsDefault] = Field(DEFAULT_LORA_RANK, ge=1, le=512, description="Adapter rank.")
    alpha: float = Field(0.0, ge=0, description="Scaling numerator (alpha / rank scales the update); 0 means 2 x rank.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] = Field(default_factory=list, description="Module names to adapt; empty = all linear.")

    @model_validator(mode="after")
    def _alpha_from_rank(self) -> LoraConfig:
        if not self.alpha:
            self.alpha = 2.0 * self.rank
        return self


class StudentConfig(Section):
    """The model to fine-tune (``RunSpec.student``)."""

    model: str = Field("", description="Student model: directory (Hugging Face format), GGUF or registry name.")
    tokenizer: str = Field("", description="Tokenizer directory; empty means the model's.")
    kind: StudentKind = Field("auto", description="Architecture family; auto detects it from the model config.")
    lora: LoraConfig | None = Field(None, description="LoRA adapters; omit for a full fine-tune.")


class DataConfig(Section):
    """Teacher samples and how they become student examples (``RunSpec.data``)."""

    train_paths: list[str] = Field(default_factory=list, description="Sample shards/dirs (Parquet or JSONL).")
    validation_paths: list[str] = Field(default_factory=list, description="Held-out samples for validation loss.")
    format: Annotated[str, ZeroIsDefault] = Field("ft_cot", description="Student completion format, e.g. ft_cot.")
    answer_only_fraction: float = Field(0.0, ge=0, le=1, description="Share of answer-only examples (Flan mix).")
    max_seq_len: int = Field(0, ge=0, description="Longest example in tokens; 0 = the model's maximum.")
    packing: bool = Field(True, description="Pack examples into sequences (else bucket by length).")
    teacher_tokenizer: str = Field("", description="Teacher tokenizer dir for alignment; empty = samples' manifest.")


class ObjectiveConfig(Section):
    """``sft_weight * token NLL + kd_weight * D(teacher top-k, student)`` (``RunSpec.objective``)."""

    sft_weight: float = Field(1.0, ge=0, description="Weight of sample matching (token NLL on the teacher's text).")
    kd_weight: float = Field(0.0, ge=0, description="Weight of top-k distribution matching (needs top-k in the data).")
    divergence: Divergence = "forward_kl"
    jsd_beta: Annotated[float, ZeroIsDefault] = Field(
        DEFAULT_JSD_BETA, gt=0, lt=1, description="Generalized JSD weight."
    )
    top_k_mass: TopKMass = Field("renormalize", description="Mass outside the top-k: renormalize or a tail bucket.")
    kd_temperature: Annotated[float, ZeroIsDefault] = Field(1.0, gt=0, description="Temperature on student logits.")

    @model_validator(mode="before")
    @classmethod
    def _all_zero_means_sft(cls, data: Any, info: ValidationInfo) -> Any:
        # A RunSpec whose objective is all zeros asks for plain SFT, the documented default use.
        from_proto = bool(info.context and info.context.get("from_proto"))
        if from_proto and isinstance(data, dict) and not data.get("sft_weight") and not data.get("kd_weight"):
            return {**data, "sft_weight": 1.0}
        return data

    @model_validator(mode="after")
    def _some_loss(self) -> ObjectiveConfig:
        if self.sft_weight == 0 and self.kd_weight == 0:
            raise ValueError("sft_weight and kd_weight are both 0: nothing to train on")
        return self


class HyperparametersConfig(Section):
    """Optimizer (AdamW) and loop settings (``RunSpec.hyperparameters``)."""

    learning_rate: Annotated[float, ZeroIsDefault] = Field(DEFAULT_LEARNING_RATE, gt=0, le=1)
    max_steps: int = Field(0, ge=0, description="Optimizer steps; 0 derives them from epochs.")
    epochs: Annotated[float, ZeroIsDefault] = Field(1.0, gt=0, description="Passes over the data when max_steps is 0.")
    batch_size: Annotated[int, ZeroIsDefault] = Field(
        DEFAULT_BATCH_SIZE, ge=1, description="Examples per worker per micro-batch."
    )
    gradient_accumulation: Annotated[int, ZeroIsDefault] = Field(1, ge=1, description="Micro-batches per step.")
    warmup_steps: int = Field(0, ge=0)
    schedule: Schedule = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clip norm; 0 disables clipping.")
    precision: Precision = "fp32"
    gradient_checkpointing: bool = False
    loss_chunk_tokens: int = Field(
        0, ge=0, description="Supervised positions per LM-head/loss chunk; 0 = about 64 MiB of fp32 logits."
    )
    seed: int = 0

    @model_validator(mode="after")
    def _warmup_fits(self) -> HyperparametersConfig:
        if self.max_steps and self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) > max_steps ({self.max_steps})")
        return self


class ScalingConfig(Section):
    """Where and how wide to train (``RunSpec.scaling``; the service fills what is 0)."""

    num_workers: Annotated[int, ZeroIsDefault] = Field(
        1, ge=1, le=1024, description="Ray Train workers (data-parallel replicas)."
    )
    use_gpu: bool = False
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per worker when use_gpu; 0 means 1.")
    cpus_per_worker: float = Field(0.0, ge=0, description="CPUs per worker; 0 means the service's default.")
    strategy: Strategy = "ddp"
    max_failures: int = Field(2, ge=0, le=100, description="Worker failures survived by resuming.")


class CheckpointConfig(Section):
    """Checkpoint, validation and evaluation cadence (``RunSpec.checkpoints``)."""

    interval_steps: int = Field(0, ge=0, description="Save every N steps; 0 = only at the end.")
    keep_last: int = Field(0, ge=0, description="Checkpoints kept besides the best; 0 = all.")
    validation_interval_steps: int = Field(0, ge=0, description="Validation every N steps; 0 = at checkpoints.")
    evaluator_address: str = Field("", description="Evaluator called at each checkpoint; empty for none.")
    evaluator_datasets: list[str] = Field(default_factory=list, description="NAME[:SPLIT] to evaluate on.")
    evaluator_format: str = Field("", description="Student format of the evaluation; empty = data.format.")
    evaluator_limit: int = Field(0, ge=0, description="Examples per dataset at checkpoint evaluations; 0 = all.")


class OnPolicyConfig(Section):
    """On-policy distillation (GKD / MiniLLM): a share of the steps trains on the student's own
    samples, which the workers send to the teacher replicas' ``Score`` (``RunSpec.on_policy``)."""

    fraction: float = Field(0.0, ge=0, le=1, description="Share of optimizer steps on student samples (lambda).")
    teacher_addresses: list[str] = Field(default_factory=list, description="Teacher replicas (host:port, dns:///).")
    divergence: Divergence = Field("jsd", description="reverse_kl is MiniLLM's single-step term.")
    jsd_beta: Annotated[float, ZeroIsDefault] = Field(DEFAULT_JSD_BETA, gt=0, lt=1)
    top_k: Annotated[int, ZeroIsDefault] = Field(MAX_TOP_K, ge=1, le=MAX_TOP_K, description="Candidates per position.")
    support: OnPolicySupport = Field(
        "teacher_topk", description="The teacher's top-k (any tokenizers) or the student's own (same vocabulary)."
    )
    max_new_tokens: Annotated[int, ZeroIsDefault] = Field(128, ge=1, le=4096, description="Tokens per student sample.")
    temperature: float = Field(1.0, ge=0, le=10, description="The student's sampling temperature.")
    concurrency: Annotated[int, ZeroIsDefault] = Field(4, ge=1, le=64, description="Score calls in flight per worker.")
    timeout_s: Annotated[float, ZeroIsDefault] = Field(120.0, gt=0, description="Deadline of one Score call.")
    max_attempts: Annotated[int, ZeroIsDefault] = Field(4, ge=1, le=20, description="Tries per Score call.")

    @property
    def enabled(self) -> bool:
        return self.fraction > 0


class SpecSections(Section):
    """The sections of a ``RunSpec`` (its ``name`` is the run's, set by whoever owns the run)."""

    student: StudentConfig = Field(default_factory=StudentConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    hyperparameters: HyperparametersConfig = Field(default_factory=HyperparametersConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    checkpoints: CheckpointConfig = Field(default_factory=CheckpointConfig)
    on_policy: OnPolicyConfig = Field(default_factory=OnPolicyConfig)


SECTIONS: Final = tuple(SpecSections.model_fields)

# Short names without a proto value of their own: they are the enum's UNSPECIFIED.
_UNSPECIFIED_NAMES: Final = {trainer_pb2.StudentKind.DESCRIPTOR.full_name: "auto"}


def to_proto(sections: SpecSections, name: str = "") -> trainer_pb2.RunSpec:
    """The ``RunSpec`` of ``sections`` (protobuf's JSON mapping; enums by their short names).

    On-policy settings are sent only when on-policy training is on (``fraction > 0``).
    """
    data = sections.model_dump(include=set(SECTIONS), exclude_none=True)
    if not sections.on_policy.enabled:
        del data["on_policy"]
    _enums_to_numbers(data, trainer_pb2.RunSpec.DESCRIPTOR)
    return ParseDict({"name": name, **data}, trainer_pb2.RunSpec())


def proto_to_dict(spec: trainer_pb2.RunSpec) -> dict[str, Any]:
    """``spec`` as section dicts for ``model_validate(..., context=FROM_PROTO)``.

    Every field is there, zeros included (whether a zero means the default is the field's
    :data:`ZeroIsDefault` to say); UNSPECIFIED enums and unset ``optional`` fields and messages
    are left out, so they take the field's default. int64 values come as JSON strings, which
    pydantic reads as ints.
    """
    data = MessageToDict(spec, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    _enums_to_names(data, trainer_pb2.RunSpec.DESCRIPTOR)
    return data


def _enums_to_numbers(data: dict[str, Any], descriptor: Any) -> None:
    for key, value in list(data.items()):
        field = descriptor.fields_by_name[key]
        if field.message_type is not None and isinstance(value, dict):
            _enums_to_numbers(value, field.message_type)
        elif field.enum_type is not None:
            if _UNSPECIFIED_NAMES.get(field.enum_type.full_name) == value:
                data[key] = 0
            else:
                data[key] = enums.names(field.enum_type).value(value)


def _enums_to_names(data: dict[str, Any], descriptor: Any) -> None:
    for key, value in list(data.items()):
        field = descriptor.fields_by_name[key]
        if field.message_type is not None and isinstance(value, dict):
            _enums_to_names(value, field.message_type)
        elif field.enum_type is not None and isinstance(value, str):
            number = field.enum_type.values_by_name[value].number
            if number == 0:
                del data[key]  # UNSPECIFIED: the field's default
            else:
                data[key] = enums.names(field.enum_type).name(number)

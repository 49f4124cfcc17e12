"""The typed run recipe: what to distill, from which teacher, into which student.

A recipe is YAML (see ``configs/``) validated into :class:`RunConfig`; unknown keys are errors
(a typo must not silently fall back to a default). Each pipeline stage reads its own section.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cotdistill.common.samples import MAX_TOP_K
from cotdistill.common.training_spec import SpecSections

DatasetGroupName = Literal["in_distribution", "out_of_distribution", "generic"]
StageName = Literal["sample", "score", "filter", "train", "evaluate", "select", "serve"]
ALL_STAGES: tuple[StageName, ...] = ("sample", "filter", "train", "evaluate", "select", "serve")
"""The default stages. ``score`` (KD on given rationales) replaces ``sample`` where it is used:
``stages: [score, filter, train, ...]``."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Section(BaseModel):
    """Base of every recipe section: unknown keys are rejected, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetRef(Section):
    """A dataset of the run and its role."""

    name: str = Field(description="Registry name (`cotdistill data list`) or a path to a custom file.")
    split: str = Field("test", description="Split to use, e.g. train, test, dev.")
    group: DatasetGroupName = Field("in_distribution", description="Role in evaluation and selection.")
    limit: int | None = Field(None, ge=1, description="Use only the first N examples.")


class TeacherSection(Section):
    """Where the teacher replicas are (the sampling job spreads its work units over them)."""

    addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:50051"],
        min_length=1,
        description="host:port of each replica, or one dns:/// name with a record per replica.",
    )
    timeout_s: float = Field(600.0, gt=0, description="Deadline of one work unit's Sample call.")
    connect_timeout_s: float = Field(
        120.0, gt=0, description="How long to wait at start for a replica to answer Info (model loading)."
    )


class SamplingSection(Section):
    """Teacher sampling (diverse reasoning): dataset x D samples, cut into resumable work units."""

    dataset: str = Field("synthetic_arithmetic", description="Dataset the questions come from.")
    split: str = "train"
    limit: int | None = Field(None, ge=1, description="Use only the first N questions.")
    prompt_format: str = Field("zero_shot_cot", description="Named teacher prompt format.")
    prompt_template: Literal["auto", "chat", "raw"] = Field(
        "auto",
        description="Render prompts through the teacher's chat template (auto: when it has one) or send them raw.",
    )
    system_prompt: str | None = Field(
        None, max_length=4096, description="System turn for chat-template prompts (none: the template's default)."
    )
    num_samples: int = Field(1, ge=1, le=1024, description="D: rationales per question.")
    temperature: float = Field(0.7, ge=0, le=10)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(128, ge=1, le=32768)
    stop: list[str] = Field(default_factory=list, max_length=16, description="Strings that end a rationale.")
    top_k_logprobs: int = Field(0, ge=0, le=MAX_TOP_K, description="Teacher candidates kept per token (0 = none).")
    logprob_mode: Literal["raw", "processed"] = Field(
        "raw", description="Top-k logprobs before (raw) or after (processed) temperature."
    )
    two_stage: bool = Field(False, description="Zero-shot-CoT second stage (answer trigger).")
    answer_trigger: str | None = Field(None, description="Stage-2 trigger; None means the dataset's own.")
    answer_max_tokens: int = Field(32, ge=1, le=256, description="Stage-2 answer length limit.")
    seed: int | None = None
    concurrency: int = Field(8, ge=1, le=4096, description="Work units in flight across replicas.")
    unit_size: int = Field(16, ge=1, le=4096, description="Questions per work unit.")
    max_attempts: int = Field(5, ge=1, le=100, description="Tries per work unit (each on another replica).")
    retry_delay_s: float = Field(0.5, ge=0, le=60, description="Base of the exponential backoff between tries.")

    @model_validator(mode="after")
    def _greedy_means_one_sample(self) -> SamplingSection:
        if self.temperature == 0 and self.num_samples > 1:
            raise ValueError("num_samples: must be 1 with temperature 0 (greedy samples are identical)")
        return self


class ScoringSection(Section):
    """Teacher scoring (the ``score`` stage): given rationales -> the teacher's top-k over their tokens.

    The rationales are the gold ones of ``dataset``/``split`` (GSM8K's solutions, Flan CoT's
    human rationales, the synthetic tasks' ground truth) or, with ``paths``, those of existing
    sample shards (another teacher's samples, ``cotdistill data import`` output). Each is scored
    after this teacher's own prompt for its question, rendered as the sampling stage renders it.
    """

    dataset: str = Field("synthetic_arithmetic", description="Dataset whose questions (and gold rationales) are used.")
    split: str = "train"
    limit: int | None = Field(None, ge=1, description="Use only the first N rationales.")
    paths: list[str] = Field(
        default_factory=list,
        description="Parquet sample shards or directories to score instead of the dataset's gold rationales.",
    )
    prompt_format: str = Field("zero_shot_cot", description="Named teacher prompt format the rationales follow.")
    prompt_template: Literal["auto", "chat", "raw"] = Field(
        "auto", description="Render prompts through the teacher's chat template (auto: when it has one) or raw."
    )
    system_prompt: str | None = Field(None, max_length=4096, description="System turn for chat-template prompts.")
    separator: str | None = Field(
        None,
        description="Text between the prompt and a gold rationale; None: a space after a prompt ending in a word "
        "(e.g. 'Let's think step by step.'), nothing after whitespace or a fresh assistant turn.",
    )
    top_k_logprobs: int = Field(
        MAX_TOP_K, ge=1, le=MAX_TOP_K, description="Teacher candidates kept per rationale token."
    )
    concurrency: int = Field(8, ge=1, le=4096, description="Work units in flight across replicas.")
    unit_size: int = Field(16, ge=1, le=4096, description="Rationales per work unit (one Score call).")
    max_attempts: int = Field(5, ge=1, le=100, description="Tries per work unit (each on another replica).")
    retry_delay_s: float = Field(0.5, ge=0, le=60, description="Base of the exponential backoff between tries.")


class FilterSection(Section):
    """Which teacher samples become training data (the ``filter`` stage)."""

    require_correct: bool = Field(True, description="Keep only samples whose extracted answer equals the gold one.")
    drop_truncated: bool = Field(
        True, description="Drop samples cut at max_tokens (finish_reason length): their rationale never ended."
    )
    dedupe: bool = Field(True, description="Drop repeated rationales of the same question.")
    min_rationale_chars: int = Field(1, ge=1)
    max_rationale_chars: int | None = Field(None, ge=1, description="Drop longer rationales; None keeps all.")


# Keys of the flat training section before it was nested like RunSpec, and where each went.
_RENAMED: dict[str, str] = {
    "tokenizer": "student.tokenizer",
    "lora_rank": "student.lora.rank",
    "lora_alpha": "student.lora.alpha",
    "lora_target_modules": "student.lora.target_modules",
    "checkpoint_interval_steps": "checkpoints.interval_steps",
    "top_k": "on_policy.top_k_logprobs",
}


def _moved_training_keys() -> dict[str, str]:
    moved = dict(_RENAMED)
    for section, info in SpecSections.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for key in annotation.model_fields:
                moved.setdefault(key, f"{section}.{key}")
    return moved


MOVED_TRAINING_KEYS: dict[str, str] = _moved_training_keys()
"""Old flat ``training`` key -> its path in the nested section."""


class TrainingSection(SpecSections):
    """Student fine-tuning through the trainer service (``cotdistill train`` and the train stage).

    Nested like the trainer's ``RunSpec`` (:mod:`cotdistill.common.training_spec`: the same
    sections, names and defaults), so ``training.hyperparameters.learning_rate`` is
    ``RunSpec.hyperparameters.learning_rate`` and the service's errors name the same path.
    Filled in by the client when left empty: ``data.train_paths`` (this run's ``train/``, else
    ``samples/``), ``on_policy.teacher_addresses`` (``teacher.addresses``) and the checkpoint
    evaluation's datasets and format (the ``evaluation`` section's).
    """

    trainer_address: str = Field("127.0.0.1:50052", description="host:port of the trainer service.")
    evaluate_at_checkpoints: bool = Field(
        False,
        description="Evaluate each checkpoint (on evaluation.datasets, evaluation.formats[0]); "
        "checkpoints.evaluator_address defaults to evaluation.evaluator_address.",
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_keys_moved(cls, data: Any) -> Any:
        """A key of the old flat section gets an error saying where it went (not "extra inputs").

        The error's ``key`` lets the config loader point at that key's line.
        """
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            if key == "student" and isinstance(value, str):
                raise PydanticCustomError(
                    "moved_key",
                    "a section like RunSpec.student now: write student: {model: {value}}",
                    {"key": key, "value": value},
                )
            if key == "objective" and isinstance(value, str):
                raise PydanticCustomError(
                    "moved_key",
                    "a section like RunSpec.objective now: give its weights, e.g. objective: "
                    "{sft_weight: 1.0, kd_weight: 1.0} for sft+kd, {sft_weight: 0, kd_weight: 1.0} for kd "
                    "(was '{value}')",
                    {"key": key, "value": value},
                )
            if key in MOVED_TRAINING_KEYS and key not in cls.model_fields:
                raise PydanticCustomError(
                    "moved_key",
                    "moved to training.{new} (the section is nested like the trainer's RunSpec)",
                    {"key": key, "new": MOVED_TRAINING_KEYS[key]},
                )
        return data


class EvaluationSection(Section):
    """Evaluation and model selection through the evaluator service.

    What gets evaluated: every ``checkpoints/step-*`` of the run (or ``checkpoints`` when given),
    plus the teacher service when ``evaluate_teacher`` is set and an OpenAI-compatible endpoint
    when ``openai_url`` is set. ``generic_set`` adds a BIG-Bench-Hard-style JSON file
    (``{"examples": [{"input", "target"}]}``) as the generic group.
    """

    evaluator_address: str = "127.0.0.1:50053"
    datasets: list[DatasetRef] = Field(default_factory=list)
    formats: list[str] = Field(default_factory=lambda: ["ft_cot"])
    selection_signal: Literal["in_distribution", "out_of_distribution", "weighted", "validation_loss"] = (
        "in_distribution"
    )
    id_weight: float = Field(0.5, ge=0, le=1, description="Weight of ID accuracy for the weighted signal.")
    selection_datasets: list[DatasetRef] = Field(
        default_factory=list, description="Validation (dev) datasets for selection; empty means `datasets`."
    )
    checkpoints: list[str] = Field(
        default_factory=list, description="Checkpoint directories; empty means the run's checkpoints/step-*."
    )
    evaluate_checkpoints: bool = Field(
        True, description="Evaluate the run's student checkpoints; false for only the teacher or openai_url."
    )
    evaluate_teacher: bool = Field(False, description="Also evaluate the teacher (teacher.addresses[0]).")
    openai_url: str | None = Field(None, description="Also evaluate an OpenAI-compatible server (base URL with /v1).")
    openai_model: str = Field("", description="Model name sent to openai_url.")
    generic_set: str | None = Field(None, description="BIG-Bench-Hard-style JSON file, evaluated as group generic.")
    max_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=10, description="0 is greedy; > 0 samples.")
    num_samples: int = Field(1, ge=1, le=64, description="Samples per question for maj@k (needs temperature > 0).")
    seed: int | None = None
    batch_size: int = Field(32, ge=1, le=1024)
    no_cache: bool = Field(False, description="Evaluate again even when cached results exist.")
    timeout_s: float = Field(3600.0, gt=0, description="Deadline of one Evaluate or Select call.")


class ServingSection(Section):
    """The model server that serves the selected student (the ``serve`` stage reloads it)."""

    url: str = Field("http://127.0.0.1:8000", description="Base URL of the model server.")
    api_key_env: str = Field(
        "COTDISTILL_API_KEY", description="Environment variable holding the server's API key ('' for open mode)."
    )
    timeout_s: float = Field(300.0, gt=0, description="How long loading the checkpoint may take.")


class RunConfig(Section):
    """A whole pipeline run."""

    name: str = Field(description="Run name: the directory under output_dir.")
    output_dir: str = Field("runs", description="Artifact store root (directory or fsspec URI).")
    stages: list[StageName] = Field(default_factory=lambda: list(ALL_STAGES), description="Stages to run, in order.")
    teacher: TeacherSection = Field(default_factory=TeacherSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    scoring: ScoringSection = Field(default_factory=ScoringSection)
    filter: FilterSection = Field(default_factory=FilterSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    serving: ServingSection = Field(default_factory=ServingSection)

    @field_validator("name")
    @classmethod
    def _name_is_a_directory_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.', '-' (it names a directory)")
        return value

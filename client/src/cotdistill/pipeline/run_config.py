"""The typed run recipe: what to distill, from which teacher, into which student.

A recipe is YAML (see ``configs/``) validated into :class:`RunConfig`; unknown keys are errors
(a typo must not silently fall back to a default). Each pipeline stage reads its own section.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    top_k_logprobs: int = Field(0, ge=0, le=20, description="Teacher candidates kept per token (0 = none).")
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
    top_k_logprobs: int = Field(20, ge=1, le=20, description="Teacher candidates kept per rationale token.")
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


class OnPolicySection(Section):
    """On-policy distillation (GKD / MiniLLM): a share of the training steps runs on the student's
    own samples, which the trainer's workers send to the teacher replicas' ``Score``."""

    fraction: float = Field(0.0, ge=0, le=1, description="Share of optimizer steps on student samples (GKD's lambda).")
    teacher_addresses: list[str] = Field(
        default_factory=list, description="Teacher replicas the workers call; empty means teacher.addresses."
    )
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = Field(
        "jsd", description="Divergence on the student's samples (reverse_kl: MiniLLM's single-step term)."
    )
    jsd_beta: float = Field(0.5, gt=0, lt=1, description="Generalized JSD interpolation weight.")
    top_k: int = Field(20, ge=1, le=20, description="Candidates per position.")
    support: Literal["teacher_topk", "student_topk"] = Field(
        "teacher_topk",
        description="The teacher's top-k (any tokenizers) or the student's own top-k (a teacher with its vocabulary).",
    )
    max_new_tokens: int = Field(128, ge=1, le=4096, description="Tokens the student generates per sample.")
    temperature: float = Field(1.0, ge=0, le=10, description="The student's sampling temperature.")
    concurrency: int = Field(4, ge=1, le=64, description="Score calls in flight per worker.")
    timeout_s: float = Field(120.0, gt=0, description="Deadline of one Score call.")
    max_attempts: int = Field(4, ge=1, le=20, description="Tries per Score call, each on another replica.")


class TrainingSection(Section):
    """Student fine-tuning through the trainer service (``cotdistill train`` and the train stage).

    Each key maps to one field of the trainer's ``RunSpec``; the service validates the whole spec
    and names the RunSpec field it rejects (``student.model``, ``data.train_paths[0]``, ...).
    """

    trainer_address: str = Field("127.0.0.1:50052", description="host:port of the trainer service.")
    # -- student (RunSpec.student)
    student: str = Field("", description="Student model directory (Hugging Face format).")
    tokenizer: str = Field("", description="Tokenizer directory; empty means the student's.")
    lora_rank: int = Field(0, ge=0, le=512, description="LoRA adapter rank; 0 trains all weights.")
    lora_alpha: float = Field(0.0, ge=0, description="LoRA scaling numerator; 0 means 2 x rank.")
    lora_target_modules: list[str] = Field(default_factory=list, description="Modules to adapt; empty = all linear.")
    # -- data (RunSpec.data)
    train_paths: list[str] = Field(
        default_factory=list,
        description="Sample shards/dirs (Parquet or JSONL); empty means this run's train/ (else samples/).",
    )
    validation_paths: list[str] = Field(default_factory=list, description="Held-out samples for validation loss.")
    format: str = Field("ft_cot", description="Student completion format, e.g. ft_cot.")
    answer_only_fraction: float = Field(0.0, ge=0, le=1, description="Share of answer-only examples (Flan mix).")
    max_seq_len: int = Field(0, ge=0, description="Longest example in tokens; 0 = the model's maximum.")
    packing: bool = Field(True, description="Pack examples into sequences (else bucket by length).")
    teacher_tokenizer: str = Field("", description="Teacher tokenizer dir for alignment; empty = samples' manifest.")
    # -- objective (RunSpec.objective)
    objective: Literal["sft", "kd", "sft+kd"] = Field("sft", description="Sample matching, top-k KD, or both.")
    kd_weight: float = Field(1.0, ge=0, description="Weight of the KD term when objective uses it.")
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    jsd_beta: float = Field(0.5, gt=0, lt=1, description="Generalized JSD interpolation weight.")
    top_k_mass: Literal["renormalize", "tail_bucket"] = "renormalize"
    kd_temperature: float = Field(1.0, gt=0, description="Temperature on student logits in the KD term.")
    # -- hyperparameters (RunSpec.hyperparameters)
    max_steps: int = Field(100, ge=0, description="Optimizer steps; 0 derives them from epochs.")
    epochs: float = Field(1.0, gt=0, description="Passes over the data when max_steps is 0.")
    batch_size: int = Field(16, ge=1, description="Examples per worker per micro-batch.")
    gradient_accumulation: int = Field(1, ge=1)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clip norm; 0 disables clipping.")
    precision: Literal["fp32", "bf16"] = "fp32"
    gradient_checkpointing: bool = False
    seed: int = 0
    # -- scaling (RunSpec.scaling)
    num_workers: int = Field(1, ge=1, le=1024, description="Ray Train workers (data-parallel replicas).")
    use_gpu: bool = False
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per worker when use_gpu; 0 means 1.")
    cpus_per_worker: float = Field(0.0, ge=0, description="CPUs per worker; 0 means the service's default.")
    strategy: Literal["ddp", "fsdp"] = "ddp"
    max_failures: int = Field(2, ge=0, le=100, description="Worker failures survived by resuming.")
    # -- checkpoints (RunSpec.checkpoints)
    checkpoint_interval_steps: int = Field(0, ge=0, description="Save every N steps; 0 = only at the end.")
    keep_last: int = Field(0, ge=0, description="Checkpoints kept besides the best; 0 = all.")
    validation_interval_steps: int = Field(0, ge=0, description="Validation every N steps; 0 = at checkpoints.")
    evaluator_address: str = Field(
        "",
        description="Evaluator called at each checkpoint (on evaluation.datasets, evaluation.formats[0]); "
        "empty for none unless evaluate_at_checkpoints.",
    )
    evaluate_at_checkpoints: bool = Field(
        False, description="Evaluate each checkpoint; evaluator_address defaults to evaluation.evaluator_address."
    )
    evaluator_limit: int = Field(0, ge=0, description="Examples per dataset at checkpoint evaluations; 0 = all.")
    # -- on-policy distillation (RunSpec.on_policy)
    on_policy: OnPolicySection = Field(default_factory=OnPolicySection)


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

import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_PENDING: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_SUCCEEDED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
    RUN_STATE_CANCELLED: _ClassVar[RunState]

class StudentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STUDENT_KIND_UNSPECIFIED: _ClassVar[StudentKind]
    STUDENT_KIND_DECODER_ONLY: _ClassVar[StudentKind]
    STUDENT_KIND_ENCODER_DECODER: _ClassVar[StudentKind]

class Divergence(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIVERGENCE_UNSPECIFIED: _ClassVar[Divergence]
    DIVERGENCE_FORWARD_KL: _ClassVar[Divergence]
    DIVERGENCE_REVERSE_KL: _ClassVar[Divergence]
    DIVERGENCE_JSD: _ClassVar[Divergence]

class TopKMass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOP_K_MASS_UNSPECIFIED: _ClassVar[TopKMass]
    TOP_K_MASS_RENORMALIZE: _ClassVar[TopKMass]
    TOP_K_MASS_TAIL_BUCKET: _ClassVar[TopKMass]

class LrSchedule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LR_SCHEDULE_UNSPECIFIED: _ClassVar[LrSchedule]
    LR_SCHEDULE_COSINE: _ClassVar[LrSchedule]
    LR_SCHEDULE_LINEAR: _ClassVar[LrSchedule]
    LR_SCHEDULE_CONSTANT: _ClassVar[LrSchedule]

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_FP32: _ClassVar[Precision]
    PRECISION_BF16: _ClassVar[Precision]

class ParallelStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARALLEL_STRATEGY_UNSPECIFIED: _ClassVar[ParallelStrategy]
    PARALLEL_STRATEGY_DDP: _ClassVar[ParallelStrategy]
    PARALLEL_STRATEGY_FSDP: _ClassVar[ParallelStrategy]

class OnPolicySupport(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ON_POLICY_SUPPORT_UNSPECIFIED: _ClassVar[OnPolicySupport]
    ON_POLICY_SUPPORT_TEACHER_TOPK: _ClassVar[OnPolicySupport]
    ON_POLICY_SUPPORT_STUDENT_TOPK: _ClassVar[OnPolicySupport]
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_PENDING: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_SUCCEEDED: RunState
RUN_STATE_FAILED: RunState
RUN_STATE_CANCELLED: RunState
STUDENT_KIND_UNSPECIFIED: StudentKind
STUDENT_KIND_DECODER_ONLY: StudentKind
STUDENT_KIND_ENCODER_DECODER: StudentKind
DIVERGENCE_UNSPECIFIED: Divergence
DIVERGENCE_FORWARD_KL: Divergence
DIVERGENCE_REVERSE_KL: Divergence
DIVERGENCE_JSD: Divergence
TOP_K_MASS_UNSPECIFIED: TopKMass
TOP_K_MASS_RENORMALIZE: TopKMass
TOP_K_MASS_TAIL_BUCKET: TopKMass
LR_SCHEDULE_UNSPECIFIED: LrSchedule
LR_SCHEDULE_COSINE: LrSchedule
LR_SCHEDULE_LINEAR: LrSchedule
LR_SCHEDULE_CONSTANT: LrSchedule
PRECISION_UNSPECIFIED: Precision
PRECISION_FP32: Precision
PRECISION_BF16: Precision
PARALLEL_STRATEGY_UNSPECIFIED: ParallelStrategy
PARALLEL_STRATEGY_DDP: ParallelStrategy
PARALLEL_STRATEGY_FSDP: ParallelStrategy
ON_POLICY_SUPPORT_UNSPECIFIED: OnPolicySupport
ON_POLICY_SUPPORT_TEACHER_TOPK: OnPolicySupport
ON_POLICY_SUPPORT_STUDENT_TOPK: OnPolicySupport

class StudentSpec(_message.Message):
    __slots__ = ("model", "tokenizer", "kind", "lora")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    model: str
    tokenizer: str
    kind: StudentKind
    lora: LoraSpec
    def __init__(self, model: _Optional[str] = ..., tokenizer: _Optional[str] = ..., kind: _Optional[_Union[StudentKind, str]] = ..., lora: _Optional[_Union[LoraSpec, _Mapping]] = ...) -> None: ...

class LoraSpec(_message.Message):
    __slots__ = ("rank", "alpha", "dropout", "target_modules")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    rank: int
    alpha: float
    dropout: float
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rank: _Optional[int] = ..., alpha: _Optional[float] = ..., dropout: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ...) -> None: ...

class DataSpec(_message.Message):
    __slots__ = ("train_paths", "validation_paths", "format", "answer_only_fraction", "max_seq_len", "packing", "teacher_tokenizer")
    TRAIN_PATHS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_PATHS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_ONLY_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LEN_FIELD_NUMBER: _ClassVar[int]
    PACKING_FIELD_NUMBER: _ClassVar[int]
    TEACHER_TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    train_paths: _containers.RepeatedScalarFieldContainer[str]
    validation_paths: _containers.RepeatedScalarFieldContainer[str]
    format: str
    answer_only_fraction: float
    max_seq_len: int
    packing: bool
    teacher_tokenizer: str
    def __init__(self, train_paths: _Optional[_Iterable[str]] = ..., validation_paths: _Optional[_Iterable[str]] = ..., format: _Optional[str] = ..., answer_only_fraction: _Optional[float] = ..., max_seq_len: _Optional[int] = ..., packing: _Optional[bool] = ..., teacher_tokenizer: _Optional[str] = ...) -> None: ...

class ObjectiveSpec(_message.Message):
    __slots__ = ("sft_weight", "kd_weight", "divergence", "jsd_beta", "top_k_mass", "kd_temperature")
    SFT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    KD_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    JSD_BETA_FIELD_NUMBER: _ClassVar[int]
    TOP_K_MASS_FIELD_NUMBER: _ClassVar[int]
    KD_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    sft_weight: float
    kd_weight: float
    divergence: Divergence
    jsd_beta: float
    top_k_mass: TopKMass
    kd_temperature: float
    def __init__(self, sft_weight: _Optional[float] = ..., kd_weight: _Optional[float] = ..., divergence: _Optional[_Union[Divergence, str]] = ..., jsd_beta: _Optional[float] = ..., top_k_mass: _Optional[_Union[TopKMass, str]] = ..., kd_temperature: _Optional[float] = ...) -> None: ...

class OnPolicySpec(_message.Message):
    __slots__ = ("fraction", "teacher_addresses", "divergence", "jsd_beta", "top_k_logprobs", "support", "max_new_tokens", "temperature", "concurrency", "timeout_s", "max_attempts")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    TEACHER_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    JSD_BETA_FIELD_NUMBER: _ClassVar[int]
    TOP_K_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    teacher_addresses: _containers.RepeatedScalarFieldContainer[str]
    divergence: Divergence
    jsd_beta: float
    top_k_logprobs: int
    support: OnPolicySupport
    max_new_tokens: int
    temperature: float
    concurrency: int
    timeout_s: float
    max_attempts: int
    def __init__(self, fraction: _Optional[float] = ..., teacher_addresses: _Optional[_Iterable[str]] = ..., divergence: _Optional[_Union[Divergence, str]] = ..., jsd_beta: _Optional[float] = ..., top_k_logprobs: _Optional[int] = ..., support: _Optional[_Union[OnPolicySupport, str]] = ..., max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., concurrency: _Optional[int] = ..., timeout_s: _Optional[float] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class Hyperparameters(_message.Message):
    __slots__ = ("learning_rate", "max_steps", "epochs", "batch_size", "gradient_accumulation", "warmup_steps", "schedule", "weight_decay", "max_grad_norm", "precision", "gradient_checkpointing", "seed", "loss_chunk_tokens")
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_FIELD_NUMBER: _ClassVar[int]
    WARMUP_STEPS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_CHECKPOINTING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LOSS_CHUNK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    learning_rate: float
    max_steps: int
    epochs: float
    batch_size: int
    gradient_accumulation: int
    warmup_steps: int
    schedule: LrSchedule
    weight_decay: float
    max_grad_norm: float
    precision: Precision
    gradient_checkpointing: bool
    seed: int
    loss_chunk_tokens: int
    def __init__(self, learning_rate: _Optional[float] = ..., max_steps: _Optional[int] = ..., epochs: _Optional[float] = ..., batch_size: _Optional[int] = ..., gradient_accumulation: _Optional[int] = ..., warmup_steps: _Optional[int] = ..., schedule: _Optional[_Union[LrSchedule, str]] = ..., weight_decay: _Optional[float] = ..., max_grad_norm: _Optional[float] = ..., precision: _Optional[_Union[Precision, str]] = ..., gradient_checkpointing: _Optional[bool] = ..., seed: _Optional[int] = ..., loss_chunk_tokens: _Optional[int] = ...) -> None: ...

class ScalingSpec(_message.Message):
    __slots__ = ("num_workers", "use_gpu", "gpus_per_worker", "cpus_per_worker", "strategy", "max_failures")
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
    USE_GPU_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_WORKER_FIELD_NUMBER: _ClassVar[int]
    CPUS_PER_WORKER_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURES_FIELD_NUMBER: _ClassVar[int]
    num_workers: int
    use_gpu: bool
    gpus_per_worker: float
    cpus_per_worker: float
    strategy: ParallelStrategy
    max_failures: int
    def __init__(self, num_workers: _Optional[int] = ..., use_gpu: _Optional[bool] = ..., gpus_per_worker: _Optional[float] = ..., cpus_per_worker: _Optional[float] = ..., strategy: _Optional[_Union[ParallelStrategy, str]] = ..., max_failures: _Optional[int] = ...) -> None: ...

class CheckpointSpec(_message.Message):
    __slots__ = ("interval_steps", "keep_last", "validation_interval_steps", "evaluator_address", "evaluator_datasets", "evaluator_format", "evaluator_limit")
    INTERVAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    KEEP_LAST_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_INTERVAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_DATASETS_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_FORMAT_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_LIMIT_FIELD_NUMBER: _ClassVar[int]
    interval_steps: int
    keep_last: int
    validation_interval_steps: int
    evaluator_address: str
    evaluator_datasets: _containers.RepeatedScalarFieldContainer[str]
    evaluator_format: str
    evaluator_limit: int
    def __init__(self, interval_steps: _Optional[int] = ..., keep_last: _Optional[int] = ..., validation_interval_steps: _Optional[int] = ..., evaluator_address: _Optional[str] = ..., evaluator_datasets: _Optional[_Iterable[str]] = ..., evaluator_format: _Optional[str] = ..., evaluator_limit: _Optional[int] = ...) -> None: ...

class RunSpec(_message.Message):
    __slots__ = ("name", "student", "data", "objective", "hyperparameters", "scaling", "checkpoints", "on_policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STUDENT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SCALING_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    ON_POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    student: StudentSpec
    data: DataSpec
    objective: ObjectiveSpec
    hyperparameters: Hyperparameters
    scaling: ScalingSpec
    checkpoints: CheckpointSpec
    on_policy: OnPolicySpec
    def __init__(self, name: _Optional[str] = ..., student: _Optional[_Union[StudentSpec, _Mapping]] = ..., data: _Optional[_Union[DataSpec, _Mapping]] = ..., objective: _Optional[_Union[ObjectiveSpec, _Mapping]] = ..., hyperparameters: _Optional[_Union[Hyperparameters, _Mapping]] = ..., scaling: _Optional[_Union[ScalingSpec, _Mapping]] = ..., checkpoints: _Optional[_Union[CheckpointSpec, _Mapping]] = ..., on_policy: _Optional[_Union[OnPolicySpec, _Mapping]] = ...) -> None: ...

class CheckpointInfo(_message.Message):
    __slots__ = ("step", "path", "validation_loss", "is_best")
    STEP_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    IS_BEST_FIELD_NUMBER: _ClassVar[int]
    step: int
    path: str
    validation_loss: float
    is_best: bool
    def __init__(self, step: _Optional[int] = ..., path: _Optional[str] = ..., validation_loss: _Optional[float] = ..., is_best: _Optional[bool] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "spec", "state", "error", "created_at", "started_at", "finished_at", "step", "total_steps", "checkpoints", "output_dir")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DIR_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    spec: RunSpec
    state: RunState
    error: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    step: int
    total_steps: int
    checkpoints: _containers.RepeatedCompositeFieldContainer[CheckpointInfo]
    output_dir: str
    def __init__(self, run_id: _Optional[str] = ..., spec: _Optional[_Union[RunSpec, _Mapping]] = ..., state: _Optional[_Union[RunState, str]] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., checkpoints: _Optional[_Iterable[_Union[CheckpointInfo, _Mapping]]] = ..., output_dir: _Optional[str] = ...) -> None: ...

class StepEvent(_message.Message):
    __slots__ = ("step", "total_steps", "loss", "loss_parts", "learning_rate", "tokens_per_second", "grad_norm", "metrics")
    class LossPartsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LOSS_PARTS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    loss: float
    loss_parts: _containers.ScalarMap[str, float]
    learning_rate: float
    tokens_per_second: float
    grad_norm: float
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., loss_parts: _Optional[_Mapping[str, float]] = ..., learning_rate: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., grad_norm: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class EvaluationEvent(_message.Message):
    __slots__ = ("step", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    step: int
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, step: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PhaseEvent(_message.Message):
    __slots__ = ("name", "elapsed_s", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    elapsed_s: float
    detail: str
    def __init__(self, name: _Optional[str] = ..., elapsed_s: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class StateEvent(_message.Message):
    __slots__ = ("state", "reason")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    state: RunState
    reason: str
    def __init__(self, state: _Optional[_Union[RunState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("run_id", "sequence", "time", "step", "checkpoint", "evaluation", "state", "message", "phase")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    sequence: int
    time: _timestamp_pb2.Timestamp
    step: StepEvent
    checkpoint: CheckpointInfo
    evaluation: EvaluationEvent
    state: StateEvent
    message: str
    phase: PhaseEvent
    def __init__(self, run_id: _Optional[str] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[_Union[StepEvent, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointInfo, _Mapping]] = ..., evaluation: _Optional[_Union[EvaluationEvent, _Mapping]] = ..., state: _Optional[_Union[StateEvent, _Mapping]] = ..., message: _Optional[str] = ..., phase: _Optional[_Union[PhaseEvent, _Mapping]] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: RunSpec
    def __init__(self, spec: _Optional[_Union[RunSpec, _Mapping]] = ...) -> None: ...

class StartRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id", "from_sequence")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    from_sequence: int
    def __init__(self, run_id: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: RunEvent
    def __init__(self, event: _Optional[_Union[RunEvent, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("state", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: RunState
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[_Union[RunState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class CancelRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

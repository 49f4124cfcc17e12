from cotdistill.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetGroup(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_GROUP_UNSPECIFIED: _ClassVar[DatasetGroup]
    DATASET_GROUP_IN_DISTRIBUTION: _ClassVar[DatasetGroup]
    DATASET_GROUP_OUT_OF_DISTRIBUTION: _ClassVar[DatasetGroup]
    DATASET_GROUP_GENERIC: _ClassVar[DatasetGroup]

class SelectionSignal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SELECTION_SIGNAL_UNSPECIFIED: _ClassVar[SelectionSignal]
    SELECTION_SIGNAL_IN_DISTRIBUTION_ACCURACY: _ClassVar[SelectionSignal]
    SELECTION_SIGNAL_OUT_OF_DISTRIBUTION_ACCURACY: _ClassVar[SelectionSignal]
    SELECTION_SIGNAL_WEIGHTED: _ClassVar[SelectionSignal]
    SELECTION_SIGNAL_VALIDATION_LOSS: _ClassVar[SelectionSignal]
DATASET_GROUP_UNSPECIFIED: DatasetGroup
DATASET_GROUP_IN_DISTRIBUTION: DatasetGroup
DATASET_GROUP_OUT_OF_DISTRIBUTION: DatasetGroup
DATASET_GROUP_GENERIC: DatasetGroup
SELECTION_SIGNAL_UNSPECIFIED: SelectionSignal
SELECTION_SIGNAL_IN_DISTRIBUTION_ACCURACY: SelectionSignal
SELECTION_SIGNAL_OUT_OF_DISTRIBUTION_ACCURACY: SelectionSignal
SELECTION_SIGNAL_WEIGHTED: SelectionSignal
SELECTION_SIGNAL_VALIDATION_LOSS: SelectionSignal

class EvalDataset(_message.Message):
    __slots__ = ("name", "split", "group", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    split: str
    group: DatasetGroup
    limit: int
    def __init__(self, name: _Optional[str] = ..., split: _Optional[str] = ..., group: _Optional[_Union[DatasetGroup, str]] = ..., limit: _Optional[int] = ...) -> None: ...

class EvalGeneration(_message.Message):
    __slots__ = ("max_tokens", "temperature", "num_samples", "seed", "batch_size")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    temperature: float
    num_samples: int
    seed: int
    batch_size: int
    def __init__(self, max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., num_samples: _Optional[int] = ..., seed: _Optional[int] = ..., batch_size: _Optional[int] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("model", "datasets", "formats", "generation", "output_dir", "no_cache", "label", "step", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DIR_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    datasets: _containers.RepeatedCompositeFieldContainer[EvalDataset]
    formats: _containers.RepeatedScalarFieldContainer[str]
    generation: EvalGeneration
    output_dir: str
    no_cache: bool
    label: str
    step: int
    tags: _containers.ScalarMap[str, str]
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., datasets: _Optional[_Iterable[_Union[EvalDataset, _Mapping]]] = ..., formats: _Optional[_Iterable[str]] = ..., generation: _Optional[_Union[EvalGeneration, _Mapping]] = ..., output_dir: _Optional[str] = ..., no_cache: _Optional[bool] = ..., label: _Optional[str] = ..., step: _Optional[int] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DatasetResult(_message.Message):
    __slots__ = ("dataset", "split", "format", "group", "correct", "total", "accuracy", "ci_low", "ci_high", "predictions_path", "cached")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_PATH_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    split: str
    format: str
    group: DatasetGroup
    correct: int
    total: int
    accuracy: float
    ci_low: float
    ci_high: float
    predictions_path: str
    cached: bool
    def __init__(self, dataset: _Optional[str] = ..., split: _Optional[str] = ..., format: _Optional[str] = ..., group: _Optional[_Union[DatasetGroup, str]] = ..., correct: _Optional[int] = ..., total: _Optional[int] = ..., accuracy: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., predictions_path: _Optional[str] = ..., cached: _Optional[bool] = ...) -> None: ...

class EvaluationResult(_message.Message):
    __slots__ = ("label", "model_hash", "results", "group_accuracy", "result_path", "step", "num_parameters")
    class GroupAccuracyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LABEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    GROUP_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    RESULT_PATH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    NUM_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    label: str
    model_hash: str
    results: _containers.RepeatedCompositeFieldContainer[DatasetResult]
    group_accuracy: _containers.ScalarMap[str, float]
    result_path: str
    step: int
    num_parameters: int
    def __init__(self, label: _Optional[str] = ..., model_hash: _Optional[str] = ..., results: _Optional[_Iterable[_Union[DatasetResult, _Mapping]]] = ..., group_accuracy: _Optional[_Mapping[str, float]] = ..., result_path: _Optional[str] = ..., step: _Optional[int] = ..., num_parameters: _Optional[int] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    result: EvaluationResult
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., result: _Optional[_Union[EvaluationResult, _Mapping]] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("model", "label", "step", "validation_loss")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    label: str
    step: int
    validation_loss: float
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., label: _Optional[str] = ..., step: _Optional[int] = ..., validation_loss: _Optional[float] = ...) -> None: ...

class SelectRequest(_message.Message):
    __slots__ = ("candidates", "datasets", "format", "signal", "id_weight", "generation", "output_dir")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    ID_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DIR_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    datasets: _containers.RepeatedCompositeFieldContainer[EvalDataset]
    format: str
    signal: SelectionSignal
    id_weight: float
    generation: EvalGeneration
    output_dir: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., datasets: _Optional[_Iterable[_Union[EvalDataset, _Mapping]]] = ..., format: _Optional[str] = ..., signal: _Optional[_Union[SelectionSignal, str]] = ..., id_weight: _Optional[float] = ..., generation: _Optional[_Union[EvalGeneration, _Mapping]] = ..., output_dir: _Optional[str] = ...) -> None: ...

class SelectionRow(_message.Message):
    __slots__ = ("label", "step", "signal_value", "in_distribution_accuracy", "out_of_distribution_accuracy", "validation_loss")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    IN_DISTRIBUTION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_DISTRIBUTION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    label: str
    step: int
    signal_value: float
    in_distribution_accuracy: float
    out_of_distribution_accuracy: float
    validation_loss: float
    def __init__(self, label: _Optional[str] = ..., step: _Optional[int] = ..., signal_value: _Optional[float] = ..., in_distribution_accuracy: _Optional[float] = ..., out_of_distribution_accuracy: _Optional[float] = ..., validation_loss: _Optional[float] = ...) -> None: ...

class SelectResponse(_message.Message):
    __slots__ = ("chosen_index", "chosen", "table", "signal", "table_path")
    CHOSEN_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TABLE_PATH_FIELD_NUMBER: _ClassVar[int]
    chosen_index: int
    chosen: Candidate
    table: _containers.RepeatedCompositeFieldContainer[SelectionRow]
    signal: SelectionSignal
    table_path: str
    def __init__(self, chosen_index: _Optional[int] = ..., chosen: _Optional[_Union[Candidate, _Mapping]] = ..., table: _Optional[_Iterable[_Union[SelectionRow, _Mapping]]] = ..., signal: _Optional[_Union[SelectionSignal, str]] = ..., table_path: _Optional[str] = ...) -> None: ...

"""Reasoning tasks: datasets, synthetic tasks, prompt/completion formats, answer extraction,
filtering and import of teacher samples. The vocabulary every service speaks.

    from cotdistill.common.tasks import load_dataset, render_student_pair, extract_answer
    examples = load_dataset("gsm8k", "test", limit=8)
    prompt, completion = render_student_pair("ft_cot", examples[0])
    extract_answer("... The answer is 1,234.", "gsm8k")  # -> "1234"
"""

from cotdistill.common.tasks.errors import (
    DataDirNotFound,
    MalformedDataError,
    UnknownDatasetError,
    UnknownFormatError,
    UnknownSplitError,
)
from cotdistill.common.tasks.extraction import (
    answer_trigger,
    answers_match,
    direct_answer_trigger,
    extract_answer,
    normalize_answer,
    normalize_number,
    split_gsm8k_answer,
)
from cotdistill.common.tasks.filtering import FilterStats, SampleLike, filter_samples
from cotdistill.common.tasks.formats import FormatInfo, list_formats
from cotdistill.common.tasks.importing import import_completions
from cotdistill.common.tasks.loaders.custom import ColumnMapping, load_custom_file, register_custom_dataset
from cotdistill.common.tasks.paths import resolve_data_dir
from cotdistill.common.tasks.records import ANSWER_TYPES, AnswerType, DatasetInfo, Example
from cotdistill.common.tasks.registry import (
    get_dataset_info,
    known_names,
    list_datasets,
    load_dataset,
    register_dataset,
)
from cotdistill.common.tasks.student_formats import (
    parse_student_completion,
    render_student_pair,
    student_prompt,
    student_stop,
)
from cotdistill.common.tasks.synthetic import SYNTHETIC_TASKS, generate_synthetic, rationale_styles
from cotdistill.common.tasks.teacher_prompts import (
    ChatPrompt,
    render_answer_prompt,
    render_teacher_prompt,
    teacher_chat_prompt,
    teacher_stop,
)

__all__ = [
    "ANSWER_TYPES",
    "SYNTHETIC_TASKS",
    "AnswerType",
    "ChatPrompt",
    "ColumnMapping",
    "DataDirNotFound",
    "DatasetInfo",
    "Example",
    "FilterStats",
    "FormatInfo",
    "MalformedDataError",
    "SampleLike",
    "UnknownDatasetError",
    "UnknownFormatError",
    "UnknownSplitError",
    "answer_trigger",
    "answers_match",
    "direct_answer_trigger",
    "extract_answer",
    "filter_samples",
    "generate_synthetic",
    "get_dataset_info",
    "import_completions",
    "known_names",
    "list_datasets",
    "list_formats",
    "load_custom_file",
    "load_dataset",
    "normalize_answer",
    "normalize_number",
    "parse_student_completion",
    "rationale_styles",
    "register_custom_dataset",
    "register_dataset",
    "render_answer_prompt",
    "render_student_pair",
    "render_teacher_prompt",
    "resolve_data_dir",
    "split_gsm8k_answer",
    "student_prompt",
    "student_stop",
    "teacher_chat_prompt",
    "teacher_stop",
]

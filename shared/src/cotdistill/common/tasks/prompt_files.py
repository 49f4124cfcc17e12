"""The papers' prompt files under ``<data>/prompts`` (read once per process)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cotdistill.common.tasks.errors import MalformedDataError, UnknownDatasetError
from cotdistill.common.tasks.loaders.readers import read_json
from cotdistill.common.tasks.paths import resolve_data_dir

FEW_SHOT_FILE = "prompts/reasoning_teacher/few_shot_cot_prompts.json"
FU_COMPLEX_FILE = "prompts/fu_flant5/prompt_complex.txt"
FU_SIMPLE_FILE = "prompts/fu_flant5/prompt_simple_4_cases.txt"

# Our dataset names -> Fine-tune-CoT's keys in few_shot_cot_prompts.json.
FEW_SHOT_KEYS = {
    "addsub": "addsub",
    "singleeq": "single_eq",
    "multiarith": "multiarith",
    "gsm8k": "gsm8k",
    "svamp": "svamp",
    "asdiv": "gsm8k",  # no ASDiv prompt: Wei et al.'s math exemplars, as for the other math sets
    "aqua": "aqua",
    "date_understanding": "date_understanding",
    "last_letters": "last_letter_concatenation",
    "coin_flip": "coin_flip",
    "commonsenseqa": "commonsense_qa",
    "strategyqa": "strategy_qa",
}


def few_shot_prompt(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """Wei et al.'s few-shot CoT exemplars for ``dataset`` (Fine-tune-CoT's copy), no trailing newline."""
    if dataset not in FEW_SHOT_KEYS:
        raise UnknownDatasetError(dataset, sorted(FEW_SHOT_KEYS))
    path = resolve_data_dir(data_dir) / FEW_SHOT_FILE
    doc = read_json(path)
    key = FEW_SHOT_KEYS[dataset]
    entry = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str):
        raise MalformedDataError(path, 1, f"{key}.prompt", "missing prompt")
    return str(entry["prompt"]).rstrip("\n")


def text_file(name: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """A prompt text file relative to the data dir, without trailing newlines."""
    return _text(str(resolve_data_dir(data_dir) / name))


@functools.lru_cache(maxsize=8)
def _text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\n")
    except FileNotFoundError:
        raise MalformedDataError(path, None, None, "file not found") from None

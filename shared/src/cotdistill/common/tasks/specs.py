"""Per-dataset answer conventions: answer type, choice letters and the Zero-shot-CoT trigger.

Triggers are Kojima et al.'s (zero_shot_cot ``main.py``): stage 2 appends ``" " + trigger`` to the
stage-1 text and reads the answer after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cotdistill.common.tasks.records import ANSWER_TYPES, AnswerType

NUMERIC_TRIGGER = "\nTherefore, the answer (arabic numerals) is"
YES_NO_TRIGGER = "\nTherefore, the answer (Yes or No) is"
TEXT_TRIGGER = "\nTherefore, the answer is"


def choice_trigger(letters: str) -> str:
    """``"\\nTherefore, among A through E, the answer is"`` for ``letters="ABCDE"``."""
    return f"\nTherefore, among {letters[0]} through {letters[-1]}, the answer is"


@dataclass(frozen=True)
class AnswerSpec:
    """How answers of one dataset look and are read."""

    answer_type: AnswerType
    letters: str = ""  # choice letters, in order ("ABCDE")

    @property
    def trigger(self) -> str:
        """The Zero-shot-CoT stage-2 answer trigger (starts with a newline)."""
        if self.answer_type == "number":
            return NUMERIC_TRIGGER
        if self.answer_type == "yes_no":
            return YES_NO_TRIGGER
        if self.answer_type == "choice":
            return choice_trigger(self.letters or "ABCDE")
        return TEXT_TRIGGER

    @property
    def direct_trigger(self) -> str:
        """The answer-only (Zero-shot) trigger: ``"The answer (arabic numerals) is"`` etc."""
        text = self.trigger.replace("\nTherefore, ", "")
        return text[0].upper() + text[1:]


NUMBER = AnswerSpec("number")
YES_NO = AnswerSpec("yes_no")
TEXT = AnswerSpec("text")

SPECS: dict[str, AnswerSpec] = {
    "gsm8k": NUMBER,
    "svamp": NUMBER,
    "multiarith": NUMBER,
    "addsub": NUMBER,
    "singleeq": NUMBER,
    "asdiv": NUMBER,
    "aqua": AnswerSpec("choice", "ABCDE"),
    "commonsenseqa": AnswerSpec("choice", "ABCDE"),
    "date_understanding": AnswerSpec("choice", "ABCDEF"),
    "tracking_shuffled_objects": AnswerSpec("choice", "ABC"),
    "coin_flip": YES_NO,
    "strategyqa": YES_NO,
    "last_letters": TEXT,
    "synthetic_arithmetic": NUMBER,
    "synthetic_arithmetic_4step": NUMBER,
    "synthetic_arithmetic_newtemplate": NUMBER,
    "synthetic_last_letters": TEXT,
    "synthetic_last_letters_4": TEXT,
    "synthetic_coin_flip": YES_NO,
    "synthetic_coin_flip_4": YES_NO,
}

# Generic specs addressed by answer type instead of dataset name.
TYPE_SPECS: dict[str, AnswerSpec] = {
    "number": NUMBER,
    "choice": AnswerSpec("choice", "ABCDEF"),
    "yes_no": YES_NO,
    "text": TEXT,
}

_CUSTOM: dict[str, AnswerSpec] = {}


def register_spec(name: str, spec: AnswerSpec) -> None:
    """Register the answer convention of a custom dataset (done by the custom loaders)."""
    _CUSTOM[name] = spec


def spec_for(dataset_or_type: str) -> AnswerSpec:
    """The answer spec of a dataset name or of an answer type; raises UnknownDatasetError."""
    key = dataset_or_type.strip().lower()
    if key in SPECS:
        return SPECS[key]
    if key in _CUSTOM:
        return _CUSTOM[key]
    if key in TYPE_SPECS:
        return TYPE_SPECS[key]
    if key.startswith("choice:") and key[7:].isalpha():  # e.g. "choice:ABC"
        return AnswerSpec("choice", key[7:].upper())
    from cotdistill.common.tasks.errors import UnknownDatasetError

    raise UnknownDatasetError(dataset_or_type, sorted(SPECS) + sorted(_CUSTOM) + list(ANSWER_TYPES))

"""Answer extraction and cleansing, after Kojima et al. (zero_shot_cot ``answer_cleansing``) and
Fine-tune-CoT.

Two reading modes:

* ``after_trigger=True``: ``text`` is what the model wrote after an answer trigger (Zero-shot-CoT
  stage 2, e.g. after "Therefore, the answer (arabic numerals) is"): the *first* candidate wins.
* ``after_trigger=False``: ``text`` is a whole completion (few-shot CoT, a student's output). The
  text after the last answer phrase ("The answer is", "-->", "####", a trigger) is read and its
  first candidate wins; without an answer phrase the *last* candidate in the text wins.

Answers come back normalized (``normalize=False`` keeps Kojima et al.'s raw form), so
``pred == gold`` works for strings produced here; :func:`answers_match` adds numeric tolerance.

Two extraction modes (``mode=``):

* ``"project"`` (the default, what every report uses): the rules above; a whole completion without
  an answer in its answer part still yields the last candidate of the text.
* ``"kojima"``: Zero-shot-CoT's own ``answer_cleansing`` (kojima-takeshi188/zero_shot_cot,
  ``utils.py``), to reproduce the paper's figures: candidates found with their regular
  expressions (choice letters anywhere, not only as words), the first candidate after the
  dataset's answer trigger and *no answer* when there is none there (no fallback into the
  rationale); a text without the trigger is read as their few-shot path does (first candidate
  after the last "The answer is", else the last candidate).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Literal

from cotdistill.common.tasks.records import AnswerType
from cotdistill.common.tasks.specs import AnswerSpec, spec_for

_NUMBER = re.compile(r"-?\d+\.?\d*")
_ANSWER_PHRASE = re.compile(
    r"(?:the answer(?:\s*\([^)]*\))?\s*is|answer\s*:|-->|####)",
    re.IGNORECASE,
)
_CALCULATOR = re.compile(r"<<.*?>>")
_YES_NO_SEPARATORS = re.compile(r"\"|'|\n|\.|\s|:|,")
_TEXT_STRIP = re.compile(r"\"|'|\n|\.|\s")

ExtractionMode = Literal["project", "kojima"]
EXTRACTION_MODES: tuple[ExtractionMode, ...] = ("project", "kojima")
# Zero-shot-CoT's ``direct_answer_trigger_for_fewshot``: their reading of a text without the trigger.
_KOJIMA_FEWSHOT_TRIGGER = "The answer is"


def normalize_number(text: str) -> str | None:
    """Canonical decimal string of a number: "1,234" -> "1234", "3.50" -> "3.5", "-0" -> "0".

    Leading "$", trailing "." and "%" are dropped; every digit is kept (no rounding);
    returns None when ``text`` is not a number.
    """
    s = text.strip().replace(",", "").replace("$", "").rstrip("%").rstrip(".").strip()
    if not s:
        return None
    try:
        value = Decimal(s)
    except InvalidOperation:
        return None
    if not value.is_finite() or abs(value.adjusted()) > 100:  # "1e999999" would print a million digits
        return None
    if value == 0:
        return "0"
    # format(..., "f") keeps all digits of the input (Decimal.normalize would round to 28).
    out = format(value, "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    sign = "-" if out.startswith("-") else ""
    digits = out.lstrip("+-")
    whole, dot, frac = digits.partition(".")
    return f"{sign}{whole.lstrip('0') or '0'}{dot}{frac}"


def normalize_answer(text: str, answer_type: AnswerType) -> str:
    """Normalize a *gold* answer of ``answer_type``; raises ValueError when it does not fit."""
    raw = text.strip()
    if answer_type == "number":
        out = normalize_number(raw)
        if out is None:
            raise ValueError(f"not a number: {text!r}")
        return out
    if answer_type == "choice":
        letter = raw.strip("() .").upper()
        if len(letter) != 1 or not letter.isalpha():
            raise ValueError(f"not a choice letter: {text!r}")
        return letter
    if answer_type == "yes_no":
        word = raw.strip(" .").lower()
        if word in ("yes", "true", "1"):
            return "yes"
        if word in ("no", "false", "0"):
            return "no"
        raise ValueError(f"not yes/no: {text!r}")
    return _TEXT_STRIP.sub("", raw).lower()


def split_gsm8k_answer(answer: str) -> tuple[str, str]:
    """GSM8K gold ``"...steps...\\n#### 1,234"`` -> (rationale without ``<<a=b>>``, "1234")."""
    if "####" not in answer:
        raise ValueError("GSM8K answer lacks '#### N'")
    body, _, final = answer.rpartition("####")
    number = normalize_number(final)
    if number is None:
        raise ValueError(f"GSM8K final answer is not a number: {final.strip()!r}")
    return _CALCULATOR.sub("", body).strip(), number


def _candidates(text: str, spec: AnswerSpec) -> list[str]:
    """All answer candidates in ``text``, in order, cleansed the way Kojima et al. do (not normalized)."""
    if spec.answer_type == "number":
        return [m.rstrip(".") for m in _NUMBER.findall(text.replace(",", ""))]
    if spec.answer_type == "choice":
        letters = re.escape(spec.letters or "ABCDEF")
        return re.findall(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", text)
    if spec.answer_type == "yes_no":
        words = _YES_NO_SEPARATORS.sub(" ", text.lower()).split(" ")
        return [w for w in words if w in ("yes", "no")]
    cleaned = _TEXT_STRIP.sub("", text)
    return [cleaned] if cleaned else []


def _normalized(candidate: str | None, spec: AnswerSpec) -> str | None:
    if candidate is None:
        return None
    if spec.answer_type == "number":
        return normalize_number(candidate)
    if spec.answer_type == "text":
        return candidate.lower()
    return candidate


def _after_last_phrase(text: str) -> str | None:
    """The text after the last answer phrase, or None when there is none."""
    matches = list(_ANSWER_PHRASE.finditer(text))
    return text[matches[-1].end() :] if matches else None


def extract_answer(
    text: str | None,
    dataset_or_type: str,
    *,
    after_trigger: bool = False,
    normalize: bool = True,
    mode: ExtractionMode = "project",
) -> str | None:
    """The answer in ``text`` for a dataset name or an answer type, or None.

    ``dataset_or_type`` is a dataset name ("gsm8k", "aqua", ...), an answer type ("number",
    "choice", "yes_no", "text") or "choice:ABC". See the module docstring for the two readings
    and the two modes. ``normalize=False`` returns the candidate as Kojima et al.'s cleansing
    leaves it ("12.30", "yaeA"), to reproduce their exact-string scoring.

    Raises:
        ValueError: ``mode`` is not one of :data:`EXTRACTION_MODES`.
    """
    if text is None:
        return None
    spec = spec_for(dataset_or_type)
    if mode == "kojima":
        found = _kojima(text, spec, after_trigger)
    elif mode == "project":
        found = _extract(text, spec, after_trigger)
    else:
        raise ValueError(f"mode: unknown extraction mode {mode!r}; known: {', '.join(EXTRACTION_MODES)}")
    return _normalized(found, spec) if normalize else found


def _extract(text: str, spec: AnswerSpec, after_trigger: bool) -> str | None:
    if after_trigger:
        found = _candidates(text, spec)
        return found[0] if found else None
    tail = _after_last_phrase(text)
    if tail is not None:
        tail = re.sub(r"\s+END\b.*$", "", tail, flags=re.S)  # Fine-tune-CoT's end marker
        if spec.answer_type == "text":
            # Only the first line/sentence after the phrase is the answer ("The answer is ab. Q: ...").
            tail = re.split(r"\.\s|\n", tail.strip(), maxsplit=1)[0]
        found = _candidates(tail, spec)
        if found:
            return found[0]
    if spec.answer_type == "text":
        words = text.split()
        found = _candidates(words[-1], spec) if words else []
        return found[-1] if found else None
    found = _candidates(text, spec)
    return found[-1] if found else None


def _kojima_candidates(text: str, spec: AnswerSpec) -> list[str]:
    """Candidates as Zero-shot-CoT's ``answer_cleansing`` finds them (their regular expressions)."""
    if spec.answer_type == "choice":
        # Their pattern is "A|B|C|D|E": a letter anywhere counts, even inside a word ("Among").
        return re.findall("|".join(spec.letters or "ABCDEF"), text)
    if spec.answer_type == "text":
        return [_TEXT_STRIP.sub("", text)]  # one candidate, possibly "" (= no answer)
    return _candidates(text, spec)  # numbers and yes/no: the same expressions as ours


def _kojima(text: str, spec: AnswerSpec, after_trigger: bool) -> str | None:
    """Zero-shot-CoT's cleansing: the stage-2 text's first candidate, else no answer."""
    if not after_trigger:
        trigger = spec.trigger.strip()
        cut = text.rfind(trigger)
        if cut >= 0:
            return _kojima(text[cut + len(trigger) :], spec, after_trigger=True)
        # No Zero-shot-CoT trigger: their few-shot reading.
        parts = text.split(_KOJIMA_FEWSHOT_TRIGGER)
        found = _kojima_candidates(parts[-1], spec)
        pred = (found[0] if len(parts) > 1 else found[-1]) if found else ""
    else:
        found = _kojima_candidates(text, spec)
        pred = found[0] if found else ""
    pred = pred.removesuffix(".")
    return pred or None


def answers_match(pred: str | None, gold: str, answer_type: AnswerType) -> bool:
    """Whether a prediction equals the gold answer; numbers compare with a relative tolerance 1e-6."""
    if pred is None:
        return False
    if answer_type == "number":
        a, b = normalize_number(pred), normalize_number(gold)
        if a is None or b is None:
            return False
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    if answer_type == "choice":
        return pred.strip("() .").upper() == gold.strip("() .").upper()
    if answer_type == "yes_no":
        return pred.strip(" .").lower() == gold.strip(" .").lower()
    return _TEXT_STRIP.sub("", pred).lower() == _TEXT_STRIP.sub("", gold).lower()


def answer_trigger(dataset: str) -> str:
    """Kojima et al.'s stage-2 answer trigger, e.g. ``"\\nTherefore, the answer (arabic numerals) is"``."""
    return spec_for(dataset).trigger


def direct_answer_trigger(dataset: str) -> str:
    """The answer-only trigger, e.g. ``"The answer (arabic numerals) is"``."""
    return spec_for(dataset).direct_trigger

"""Answer extraction and cleansing (Kojima et al. / Fine-tune-CoT rules) and answer matching."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cotdistill.common.errors import NotFound
from cotdistill.common.tasks import (
    answer_trigger,
    answers_match,
    direct_answer_trigger,
    extract_answer,
    normalize_number,
    split_gsm8k_answer,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1,234", "1234"), ("3.50", "3.5"), ("-0", "0"), ("5.", "5"), ("$12", "12"), ("1234.0", "1234"),
     ("0.8333333333333334", "0.8333333333333334"), ("-3.5", "-3.5"), ("1e3", "1000"), ("abc", None), ("", None)],
)  # fmt: skip
def test_normalize_number(raw: str, expected: str | None) -> None:
    assert normalize_number(raw) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" 1,234 dollars.", "1234"),
        (" $-3.50.", "-3.5"),
        (" \n\n1792", "1792"),
        (" 18 eggs, which is 9 * 2 = 18", "18"),  # first number after the trigger
        (" no number here", None),
    ],
)
def test_number_after_trigger_takes_the_first(text: str, expected: str | None) -> None:
    assert extract_answer(text, "gsm8k", after_trigger=True) == expected


def test_number_in_full_completion() -> None:
    text = "She has 16 - 3 - 4 = 9 eggs. 9 * 2 = 18. The answer is 18. Then 5 more."
    assert extract_answer(text, "gsm8k") == "18"
    # no answer phrase: last number wins
    assert extract_answer("16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars", "number") == "18"
    assert extract_answer("Natalia sold 24 in May. --> 72 END", "number") == "72"
    assert extract_answer("#### 1,000", "gsm8k") == "1000"


@pytest.mark.parametrize(
    ("dataset", "text", "expected"),
    [
        ("aqua", " D.", "D"),
        ("aqua", " (B) 45", "B"),
        ("aqua", "\n\n(E) None of these", "E"),
        ("date_understanding", " (F) 05/01/2021.", "F"),
        ("tracking_shuffled_objects", " C.", "C"),
        ("tracking_shuffled_objects", " D.", None),  # only A-C exist
        ("commonsenseqa", " Answer: C", "C"),  # 'A' inside a word is not a letter answer
    ],
)
def test_choice_after_trigger(dataset: str, text: str, expected: str | None) -> None:
    assert extract_answer(text, dataset, after_trigger=True) == expected


def test_choice_in_full_completion() -> None:
    assert extract_answer("Among A through E, the answer is (C).", "aqua") == "C"
    assert extract_answer("A car drives. The answer is B.", "aqua") == "B"


@pytest.mark.parametrize(
    ("text", "expected"),
    [(" No.", "no"), (' "Yes", the coin is still heads up.', "yes"), (" \nYes", "yes"), (" maybe", None)],
)
def test_yes_no(text: str, expected: str | None) -> None:
    assert extract_answer(text, "coin_flip", after_trigger=True) == expected
    assert extract_answer(text, "yes_no", after_trigger=True) == expected


def test_yes_no_full_completion_prefers_answer_phrase() -> None:
    text = "Yes, flipped twice. No wait: three times, so it is tails. The answer is no."
    assert extract_answer(text, "strategyqa") == "no"


def test_text_answers() -> None:
    assert extract_answer(' "ynny".', "last_letters", after_trigger=True) == "ynny"
    assert extract_answer(' "Ya".', "last_letters", after_trigger=True) == "ya"
    assert extract_answer('The last letter of "Ana" is "a". The answer is an. Q: next', "last_letters") == "an"
    assert extract_answer("Opal -> l. Ruth -> h. --> lh END", "synthetic_last_letters") == "lh"


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(NotFound, match="gsm8k"):
        extract_answer("1", "gsm9k")


def test_none_text() -> None:
    assert extract_answer(None, "gsm8k") is None


def test_answers_match() -> None:
    assert answers_match("18.0", "18", "number")
    assert answers_match("1,000", "1000", "number")
    assert answers_match("0.8333333333333334", "0.8333333333333333", "number")
    assert not answers_match("0.83", "0.8333333333333334", "number")
    assert not answers_match(None, "1", "number")
    assert not answers_match("x", "1", "number")
    assert answers_match("(c)", "C", "choice")
    assert answers_match("Yes", "yes", "yes_no")
    assert not answers_match("no", "yes", "yes_no")
    assert answers_match('"Ynny".', "ynny", "text")


def test_gsm8k_gold() -> None:
    rationale, answer = split_gsm8k_answer("She sells 16-3-4=<<16-3-4=9>>9 eggs.\n9*2=<<9*2=18>>18\n#### 1,018")
    assert answer == "1018"
    assert rationale == "She sells 16-3-4=9 eggs.\n9*2=18"
    with pytest.raises(ValueError):
        split_gsm8k_answer("no marker")


def test_triggers_are_kojimas() -> None:
    assert answer_trigger("gsm8k") == "\nTherefore, the answer (arabic numerals) is"
    assert answer_trigger("aqua") == "\nTherefore, among A through E, the answer is"
    assert answer_trigger("commonsenseqa") == "\nTherefore, among A through E, the answer is"
    assert answer_trigger("date_understanding") == "\nTherefore, among A through F, the answer is"
    assert answer_trigger("tracking_shuffled_objects") == "\nTherefore, among A through C, the answer is"
    assert answer_trigger("strategyqa") == "\nTherefore, the answer (Yes or No) is"
    assert answer_trigger("coin_flip") == "\nTherefore, the answer (Yes or No) is"
    assert answer_trigger("last_letters") == "\nTherefore, the answer is"
    assert direct_answer_trigger("gsm8k") == "The answer (arabic numerals) is"
    assert direct_answer_trigger("aqua") == "Among A through E, the answer is"


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(["The answer is", "-->", "####", "answer:"]))
def test_any_integer_round_trips_through_an_answer_phrase(n: int, phrase: str) -> None:
    text = f"Some steps with 3 and 4 numbers. {phrase} {n:,} apples."
    assert extract_answer(text, "number") == str(n)
    assert answers_match(extract_answer(text, "gsm8k"), str(n), "number")


@given(st.decimals(min_value=-10000, max_value=10000, places=3, allow_nan=False, allow_infinity=False))
def test_normalized_decimals_keep_their_value(d: Decimal) -> None:
    out = normalize_number(str(d))
    assert out is not None and Decimal(out) == d
    assert out == "0" or not out.endswith(("0", ".")) or "." not in out
    assert extract_answer(f" {d}.", "number", after_trigger=True) == out


@given(st.text(alphabet="abcdefghij", min_size=1, max_size=8))
def test_letter_answers_after_the_phrase(word: str) -> None:
    assert extract_answer(f'The last letters give "{word}". The answer is {word}.', "last_letters") == word


@pytest.mark.parametrize(
    ("text", "dataset", "after_trigger", "expected"),
    [
        # Their choice pattern is "A|B|C|D|E": a capital letter inside a word counts.
        (" Answer: C", "commonsenseqa", True, "A"),
        (" (B) 45.", "aqua", True, "B"),
        # No candidate after the trigger: no answer, never a number from the rationale.
        ("9 * 2 = 18.\nTherefore, the answer (arabic numerals) is unclear.", "gsm8k", False, None),
        ("It is heads up.\nTherefore, the answer (Yes or No) is ambiguous", "coin_flip", False, None),
        ("16 - 3 = 13 eggs.\nTherefore, the answer (arabic numerals) is 13.", "gsm8k", False, "13"),
        # Without the Zero-shot-CoT trigger: their few-shot reading ("The answer is", else the last).
        ("So 5 + 4 = 9. The answer is 9.", "gsm8k", False, "9"),
        ("5 + 4 = 9, then 9 * 2 = 18", "gsm8k", False, "18"),
        (' "ya".', "last_letters", True, "ya"),
        (" ", "last_letters", True, None),
    ],
)
def test_kojima_mode(text: str, dataset: str, after_trigger: bool, expected: str | None) -> None:
    assert extract_answer(text, dataset, after_trigger=after_trigger, normalize=False, mode="kojima") == expected


def test_project_mode_is_the_default_and_falls_back_into_the_rationale() -> None:
    text = "9 * 2 = 18.\nTherefore, the answer (arabic numerals) is unclear."
    assert extract_answer(text, "gsm8k") == extract_answer(text, "gsm8k", mode="project") == "18"
    with pytest.raises(ValueError, match="mode: unknown extraction mode 'paper'"):
        extract_answer(text, "gsm8k", mode="paper")  # type: ignore[arg-type]

"""Our extraction against real text-davinci-002 Zero-shot-CoT outputs (Kojima et al.'s 7 logs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotdistill.common.tasks import MalformedDataError, extract_answer, load_dataset
from cotdistill.common.tasks.davinci_logs import LOG_DATASETS, parse_davinci_log, reproduce_accuracy, whole_text

LOGS = "teacher_completions/kojima_text-davinci-002_zero_shot_cot"
# Logged accuracy and item count of each log (the last line of the file; the test set size).
LOGGED = {
    "addsub": (69.62, 395),
    "aqua": (33.46, 254),
    "coin_flip": (91.40, 500),
    "date_understanding": (67.48, 369),
    "last_letters": (57.60, 500),
    "singleeq": (77.95, 508),
    "strategyqa": (54.76, 2290),
}


@pytest.mark.parametrize("stem", list(LOG_DATASETS))
def test_extraction_reproduces_logged_accuracy(stem: str, shared_data: Path) -> None:
    log = parse_davinci_log(shared_data / LOGS / f"{stem}_zero_shot_cot.log")
    accuracy, n = LOGGED[stem]
    assert log.dataset == LOG_DATASETS[stem] and len(log.items) == n
    assert log.accuracy == pytest.approx(accuracy, abs=0.005)
    assert log.trigger.startswith("\nTherefore")
    parity = reproduce_accuracy(log)
    # The paper's scoring (exact strings) applied to our extraction: within 0.5 points.
    assert abs(parity.paper_rule_accuracy - log.accuracy) <= 0.5, parity
    assert parity.same_answer == n, parity  # in fact every single answer agrees
    # Our scoring only differs where the paper's string compare missed equal numbers ("12.30" vs "12.3").
    assert log.accuracy - 0.01 <= parity.project_accuracy <= log.accuracy + 2.0, parity


def test_log_questions_are_the_dataset_questions(shared_data: Path) -> None:
    log = parse_davinci_log(shared_data / LOGS / "coin_flip_zero_shot_cot.log")
    questions = {e.question for e in load_dataset("coin_flip", "all", data_dir=shared_data)}
    assert all(item.question in questions for item in log.items)
    first = log.items[0]
    assert first.index == 1 and first.rationale.strip() and first.gold in ("yes", "no")


def test_malformed_log_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "addsub_zero_shot_cot.log"
    bad.write_text(
        "*****\nNamespace(direct_answer_trigger='\\nTherefore, the answer (arabic numerals) is', x=1)\n"
        "*************************\n1st data\n1_th_sampling\nQ: What is 1+1?\n"
        "A: Let's think step by step. One and one.\nTherefore, the answer (arabic numerals) is 2.\n"
        "pred_before :  2.\nGT : 2\n"
    )
    with pytest.raises(MalformedDataError, match=r"addsub_zero_shot_cot.log:4: pred_after: missing line"):
        parse_davinci_log(bad)
    bad.write_text("no header\n")
    with pytest.raises(MalformedDataError, match="Namespace"):
        parse_davinci_log(bad)


@pytest.mark.parametrize("stem", list(LOG_DATASETS))
def test_kojima_mode_reproduces_every_logged_pred_after(stem: str, shared_data: Path) -> None:
    """mode="kojima" is their answer_cleansing: on the stage-2 texts and on the whole shown text."""
    log = parse_davinci_log(shared_data / LOGS / f"{stem}_zero_shot_cot.log")
    n = len(log.items)
    stage2 = sum(
        (extract_answer(i.answer_text, log.dataset, after_trigger=True, normalize=False, mode="kojima") or "")
        == i.pred_after
        for i in log.items
    )
    parity = reproduce_accuracy(log)
    assert stage2 / n >= 0.995, (stage2, n)
    assert parity.kojima_same_answer / n >= 0.995, parity
    assert abs(parity.kojima_accuracy - log.accuracy) <= 0.5, parity


def test_project_mode_reads_answers_in_the_rationale_where_kojima_found_none(shared_data: Path) -> None:
    """Why the kojima mode exists: the default whole-text reading falls back into the rationale."""
    log = parse_davinci_log(shared_data / LOGS / "strategyqa_zero_shot_cot.log")
    empty = [i for i in log.items if i.pred_after == ""]
    assert empty
    text = whole_text(log, empty[0])
    assert extract_answer(text, "strategyqa", mode="kojima") is None
    assert extract_answer(text, "strategyqa") is not None  # the default reads one from the rationale
    # 104 of 2,290 answers differ (95.5% agreement): below the 99.5% the kojima mode reaches.
    assert reproduce_accuracy(log).project_whole_text_same_answer / len(log.items) < 0.995

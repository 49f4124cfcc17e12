"""Prompt and completion formats, pinned byte for byte to the papers' strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.tasks import (
    Example,
    extract_answer,
    list_formats,
    load_dataset,
    parse_student_completion,
    render_answer_prompt,
    render_student_pair,
    render_teacher_prompt,
    student_prompt,
    student_stop,
)

Q = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
R = "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May."
EX = Example("gsm8k:train:0", Q, "72", "number", rationale=R, dataset="gsm8k")
AQUA = Example("aqua:0", "What is 2+3? Answer choices: (A) 4, (B) 5.", "B", "choice", ("4", "5"), dataset="aqua")


def test_zero_shot_cot_two_stage_kojima() -> None:
    stage1 = render_teacher_prompt("zero_shot_cot", EX)
    assert stage1 == f"Q: {Q}\nA: Let's think step by step."
    z = " She sold 24 in May, so 48 + 24 = 72."
    assert (
        render_answer_prompt(EX, stage1, z)
        == f"Q: {Q}\nA: Let's think step by step.{z} \nTherefore, the answer (arabic numerals) is"
    )
    assert render_answer_prompt(AQUA, "P", "x").endswith("x \nTherefore, among A through E, the answer is")


def test_answer_only_teacher_kojima_zero_shot() -> None:
    assert render_teacher_prompt("answer_only", EX) == f"Q: {Q}\nA: The answer (arabic numerals) is"
    assert render_teacher_prompt("answer_only", AQUA) == f"Q: {AQUA.question}\nA: Among A through E, the answer is"


def test_few_shot_and_fu_prompts_use_the_papers_files(shared_data: Path) -> None:
    few = render_teacher_prompt("few_shot_cot", EX, data_dir=shared_data)
    assert few.startswith(
        "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
        "there will be 21 trees. How many trees did the grove workers plant today?\nA: There are 15 trees originally."
    )
    # Fine-tune-CoT's Formatter: few_shot_prompt + "\nQ: {question}\nA:"
    assert few.endswith("23 - 15 is 8. The answer is 8.\nQ: " + Q + "\nA:")
    assert "\n\n" not in few
    assert few.count("\nA:") == 9  # 8 exemplars (Wei et al.) + the question
    complex_ = render_teacher_prompt("fu_complex", EX, data_dir=shared_data)
    assert complex_.startswith("Question: Angelo and Melanie want to plan how many hours over the next week")
    assert complex_.endswith("= 52\nThe answer is 52\n\nQuestion: " + Q + "\nLet's think step by step\n")
    assert complex_.count("Question: ") == 9
    simple = render_teacher_prompt("fu_simple", EX, data_dir=shared_data)
    assert simple.startswith("Q: Ivan has a bird feeder in his yard that holds two cups of birdseed.")
    assert simple.endswith("= 13 complete laps.\nThe answer is 13\n\nQ: " + Q + "\nLet's think step by step\n")
    letters = load_dataset("last_letters", "test", limit=1, data_dir=shared_data)[0]
    assert render_teacher_prompt("few_shot_cot", letters, data_dir=shared_data).startswith(
        'Q: Take the last letters of each words in "Angelina Layla Jenny Zane" and concatenate them.\n'
        'A: The last letter of "Angelina" is "a".'
    )


def test_fine_tune_cot_pairs() -> None:
    assert render_student_pair("ft_cot", EX) == (f"{Q} ###", f" {R} --> 72 END")
    assert render_student_pair("ft_cot", EX, "my reasoning") == (f"{Q} ###", " my reasoning --> 72 END")
    assert render_student_pair("ft_cot_t5", EX) == (Q, f"{R} --> 72")
    assert render_student_pair("answer_only", EX) == (f"{Q} ###", " 72 END")
    assert student_stop("ft_cot") == ["END"]
    assert student_stop("ft_cot_t5") == []
    assert student_prompt("ft_cot", Q) == f"{Q} ###"


def test_fu_pairs(shared_data: Path) -> None:
    assert render_student_pair("fu_zs_cot", EX) == (f"Q: {Q}\nLet's think step by step", f"\n{R}\nThe answer is 72")
    assert render_student_pair("fu_zs_answer", EX) == (f"Q: {Q} A:", " The answer is 72")
    simple = (shared_data / "prompts/fu_flant5/prompt_simple_4_cases.txt").read_text().rstrip("\n")
    ic_cot = render_student_pair("fu_ic_cot", EX, data_dir=shared_data)
    assert ic_cot == (f"{simple}\n\nQ: {Q}\nLet's think step by step", f"\n{R}\nThe answer is 72")
    prompt, completion = render_student_pair("fu_ic_answer", EX, data_dir=shared_data)
    assert completion == " The answer is 72"
    assert prompt.startswith("Q: Ivan has a bird feeder in his yard that holds two cups of birdseed.")
    assert prompt.count("\nA: The answer is ") == 4
    assert "\nA: The answer is 21\n\nQ: " in prompt and prompt.endswith(f"\nA: The answer is 13\n\nQ: {Q}\nA:")
    assert "Let's think" not in prompt


def test_flan_templates() -> None:
    names = [f.name for f in list_formats("student") if f.name.startswith("flan_")]
    assert len([n for n in names if n.startswith("flan_cot_") and "_fs_" not in n]) == 8
    assert {"flan_cot_fs_0", "flan_answer_0", "flan_answer_fs_0"} <= set(names)
    assert render_student_pair("flan_cot_0", EX) == (
        f"{Q} Let's think first. Chain of thought:",
        f" {R}\nTherefore, the answer is 72.",
    )
    assert render_student_pair("flan_cot_4", EX) == (
        f"Lizzy: {Q}.\nMe: Hmmm, let me think. I think this is the detailed solution:",
        f" {R} Final answer: 72.",
    )
    assert render_student_pair("flan_cot_6", EX) == (
        f"{Q} A step-by-step solution is:\n",
        f"{R}\nThe final answer: 72.",
    )
    synth = load_dataset("synthetic_arithmetic", "test", limit=1)[0]
    prompt, _ = render_student_pair("flan_cot_fs_1", synth)
    assert prompt.count("Think carefully first, then make a decision:") == 4
    assert prompt.endswith(f"{synth.question} Think carefully first, then make a decision:")


@pytest.mark.parametrize("fmt", [f.name for f in list_formats("student")])
def test_every_student_format_round_trips(fmt: str) -> None:
    """parse(render(example)) gives back the rationale and an answer that extracts to the gold."""
    for name in ("synthetic_arithmetic", "synthetic_last_letters", "synthetic_coin_flip"):
        example = load_dataset(name, "dev", limit=1)[0]
        prompt, completion = render_student_pair(fmt, example)
        assert prompt == student_prompt(fmt, example.question, dataset=name)
        stops = student_stop(fmt)
        if stops:  # what a model writes past the stop string is ignored
            completion += ("" if completion.endswith(stops[0]) else stops[0]) + " junk 99"
        rationale, raw = parse_student_completion(fmt, completion)
        assert extract_answer(raw, name, after_trigger=True) == example.answer, (fmt, completion, raw)
        info = {f.name: f for f in list_formats("student")}[fmt]
        assert rationale == (example.rationale if info.uses_rationale else "")


def test_cot_format_without_rationale_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="rationale"):
        render_student_pair("ft_cot", AQUA)
    assert render_student_pair("answer_only", AQUA) == (f"{AQUA.question} ###", " B END")


def test_parse_incomplete_completions() -> None:
    assert parse_student_completion("ft_cot", " 3 + 4 = 7. --> 7 END --> 9") == ("3 + 4 = 7.", "7")
    assert parse_student_completion("ft_cot", " 3 + 4 = 7. and then") == ("3 + 4 = 7. and then", None)
    assert parse_student_completion("fu_zs_cot", "\n3 + 4 = 7.\nThe answer is 7.\n\nQ: next") == ("3 + 4 = 7.", "7")
    assert parse_student_completion("flan_cot_0", " x\nTherefore, the answer is 5.") == ("x", "5")


def test_teacher_stops() -> None:
    from cotdistill.common.tasks import teacher_stop

    assert teacher_stop("few_shot_cot") == ["\nQ:"]
    assert teacher_stop("fu_complex") == ["\nQuestion:"]
    assert {f.name for f in list_formats("teacher")} == {
        "zero_shot_cot",
        "answer_only",
        "few_shot_cot",
        "fu_complex",
        "fu_simple",
    }
    with pytest.raises(InvalidArgument, match="few_shot_cot"):
        teacher_stop("ft_cot")


def test_unknown_format_lists_known() -> None:
    with pytest.raises(InvalidArgument, match="ft_cot"):
        render_student_pair("ft_cott", EX)
    with pytest.raises(InvalidArgument, match="zero_shot_cot"):
        render_teacher_prompt("zero_shot", EX)


def test_exemplar_sources(shared_data: Path) -> None:
    from cotdistill.common.tasks.exemplars import wei_exemplars

    # Wei et al.'s prompt sizes: 8 math, 4 AQuA, 6 Date, 7 CommonsenseQA, 6 StrategyQA (one-newline file)
    sizes = {
        d: len(wei_exemplars(d, shared_data))
        for d in ("gsm8k", "aqua", "date_understanding", "commonsenseqa", "strategyqa")
    }
    assert sizes == {"gsm8k": 8, "aqua": 4, "date_understanding": 6, "commonsenseqa": 7, "strategyqa": 6}
    coin = load_dataset("coin_flip", "test", limit=1, data_dir=shared_data)[0]
    prompt, _ = render_student_pair("fu_ic_answer", coin, data_dir=shared_data)
    assert prompt.count("\nA: The answer is ") == 4
    cot_prompt = student_prompt("fu_ic_cot", coin.question, dataset="coin_flip", data_dir=shared_data)
    assert cot_prompt.startswith("Q: A coin is heads up. Angelina flips the coin.")  # Wei's, no train rationales
    assert cot_prompt.count("\nLet's think step by step\n") == 4
    tracking = load_dataset("tracking_shuffled_objects", "test", limit=1, data_dir=shared_data)[0]
    with pytest.raises(InvalidArgument, match="tracking_shuffled_objects"):
        render_teacher_prompt("few_shot_cot", tracking, data_dir=shared_data)


def test_synthetic_few_shot_needs_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTDISTILL_DATA_DIR", str(tmp_path / "absent"))
    ex = load_dataset("synthetic_last_letters", "test", limit=1)[0]
    prompt = render_teacher_prompt("few_shot_cot", ex)
    assert prompt.count("\nA: The last letter of") == 8 and prompt.endswith(f".\nQ: {ex.question}\nA:")
    assert student_prompt("fu_ic_cot", ex.question, dataset=ex.dataset).count("The answer is") == 4

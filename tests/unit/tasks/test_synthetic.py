"""Synthetic tasks: deterministic, disjoint splits, correct answers, tiny-model-sized numbers."""

from __future__ import annotations

import re

import pytest

from cotdistill.common.tasks import (
    SYNTHETIC_TASKS,
    extract_answer,
    generate_synthetic,
    get_dataset_info,
    load_dataset,
    rationale_styles,
)


def _solve_arithmetic(question: str) -> int:
    """Recompute the answer from the question text alone."""
    value = int(re.search(r"has (\d+)", question).group(1))  # type: ignore[union-attr]
    for verb, amount in re.findall(r"(buys|puts in|earns|gives away|takes out|spends) (\d+)", question):
        value += int(amount) if verb in ("buys", "puts in", "earns") else -int(amount)
    return value


def _solve_letters(question: str) -> str:
    words = re.search(r'"(.*)"', question).group(1).split()  # type: ignore[union-attr]
    return "".join(w[-1] for w in words).lower()


def _solve_coin(question: str) -> str:
    return "yes" if question.count(" flips the coin.") % 2 == 0 else "no"


@pytest.mark.parametrize("name", list(SYNTHETIC_TASKS))
def test_splits_sizes_disjoint_and_deterministic(name: str) -> None:
    info = get_dataset_info(name)
    assert info.synthetic and info.splits == ("train", "dev", "test")
    train, dev, test = (load_dataset(name, s) for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (2000, 200, 300)
    q_train, q_dev, q_test = ({e.question for e in x} for x in (train, dev, test))
    assert len(q_train) == 2000 and len(q_dev) == 200 and len(q_test) == 300
    assert not q_train & q_dev and not q_train & q_test and not q_dev & q_test
    assert load_dataset(name, "test") == test  # same every time
    assert len({e.id for e in train + dev + test}) == 2500


@pytest.mark.parametrize("name", list(SYNTHETIC_TASKS))
def test_answers_are_right_and_rationales_lead_to_them(name: str) -> None:
    family = SYNTHETIC_TASKS[name].family
    for e in load_dataset(name, "train", limit=300):
        solve = {"arithmetic": _solve_arithmetic, "last_letters": _solve_letters, "coin_flip": _solve_coin}[family]
        assert str(solve(e.question)) == e.answer, e
        assert e.rationale
        assert e.dataset == name and e.answer_type == SYNTHETIC_TASKS[name].answer_type
        if family == "arithmetic":
            numbers = [int(n) for n in re.findall(r"\d+", e.question + " " + e.rationale)]
            assert max(numbers) < 100 and min(numbers) >= 0
            # every equation in the rationale is true
            for a, op, b, c in re.findall(r"(\d+) ([+-]) (\d+) = (\d+)", e.rationale):
                assert (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(c)


def test_steps_knob_in_and_out_of_distribution() -> None:
    in_dist = load_dataset("synthetic_arithmetic", "test")
    ood = load_dataset("synthetic_arithmetic_4step", "test")
    ops = re.compile(r"buys|puts in|gives away|takes out")
    assert {len(ops.findall(e.question)) for e in in_dist} == {2, 3}
    assert {len(ops.findall(e.question)) for e in ood} == {4}
    assert {
        len(re.search(r'"(.*)"', e.question).group(1).split()) for e in load_dataset("synthetic_last_letters_4", "dev")
    } == {4}  # type: ignore[union-attr]
    six = generate_synthetic("coin_flip", 20, seed=1, steps=6)
    assert all(e.question.count("flip the coin.") + e.question.count("flips the coin.") == 6 for e in six)
    ranged = generate_synthetic("arithmetic", 200, seed=2, steps=(1, 5))
    assert {len(ops.findall(e.question)) for e in ranged} == {1, 2, 3, 4, 5}


def test_seed_and_styles() -> None:
    a = generate_synthetic("synthetic_arithmetic", 50, seed=7)
    assert a == generate_synthetic("synthetic_arithmetic", 50, seed=7)
    assert a != generate_synthetic("synthetic_arithmetic", 50, seed=8)
    for family in ("arithmetic", "last_letters", "coin_flip"):
        styles = rationale_styles(family)
        assert len(styles) >= 3
        rendered = {s: generate_synthetic(family, 5, seed=3, style=s) for s in styles}
        # same questions whatever the style (the style draw does not disturb the question draw)
        assert len({tuple(e.question for e in v) for v in rendered.values()}) == 1
        assert len({v[0].rationale for v in rendered.values()}) == len(styles)
        # a rationale in the answer_sentence style states the answer extraction can read
        for e in rendered["answer_sentence"]:
            assert extract_answer(e.rationale, e.dataset) == e.answer
    mixed = generate_synthetic("arithmetic", 200, seed=4)
    assert len({e.rationale.split(" ")[0] for e in mixed}) > 2


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="style"):
        generate_synthetic("arithmetic", 1, style="poetry")
    with pytest.raises(ValueError, match="steps"):
        generate_synthetic("arithmetic", 1, steps=0)
    with pytest.raises(KeyError):
        generate_synthetic("chess", 1)


def test_distribution_tags() -> None:
    tags = {name: get_dataset_info(name).distribution for name in SYNTHETIC_TASKS}
    assert tags == {
        "synthetic_arithmetic": "in_distribution",
        "synthetic_arithmetic_4step": "out_of_distribution",
        "synthetic_arithmetic_newtemplate": "out_of_distribution",
        "synthetic_last_letters": "in_distribution",
        "synthetic_last_letters_4": "out_of_distribution",
        "synthetic_coin_flip": "in_distribution",
        "synthetic_coin_flip_4": "out_of_distribution",
    }


def test_template_families() -> None:
    train = load_dataset("synthetic_arithmetic", "train")
    shifted = load_dataset("synthetic_arithmetic_newtemplate", "test")
    assert not any("dollars" in e.question for e in train)
    assert {"A box has" in e.question for e in train} == {True, False}
    assert all(re.match(r"^\w+ has \d+ dollars\.", e.question) for e in shifted)
    only_box = generate_synthetic("arithmetic", 20, seed=5, templates=("container",))
    assert all(e.question.startswith("A box has") for e in only_box)
    with pytest.raises(ValueError, match="templates"):
        generate_synthetic("arithmetic", 1, templates=("zoo",))

"""The 13 real datasets load from ../shared/data with their documented counts (docs/datasets.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotdistill.common.errors import NotFound
from cotdistill.common.tasks import (
    answer_trigger,
    get_dataset_info,
    list_datasets,
    load_dataset,
)
from cotdistill.common.tasks.real_datasets import REAL_DATASETS

COUNTS: dict[str, dict[str, int]] = {
    "gsm8k": {"train": 7473, "test": 1319, "dev": 200, "train_nodev": 7273},
    "svamp": {"train": 700, "test": 300, "all": 1000},
    "multiarith": {
        "train": 420,
        "test": 180,
        "all": 600,
        "train_template": 413,
        "test_template": 187,
        "dev": 60,
        "train_nodev": 360,
    },
    "addsub": {"train": 276, "test": 119, "all": 395},
    "singleeq": {"train": 356, "test": 152, "all": 508},
    "aqua": {"train": 2728, "test": 254},
    "asdiv": {"test": 2159, "all": 2159},
    "coin_flip": {"train": 350, "test": 150, "all": 500},
    "last_letters": {"train": 350, "test": 150, "all": 500},
    "date_understanding": {"train": 258, "test": 111, "all": 369, "train_template": 261, "test_template": 108},
    "tracking_shuffled_objects": {"train": 525, "test": 225, "all": 750},
    "commonsenseqa": {"train": 9741, "test": 1221, "all": 10962, "flan_train": 7112},
    "strategyqa": {"train": 1603, "test": 687, "all": 2290, "flan_train": 2061},
}


def test_thirteen_real_datasets_registered() -> None:
    real = {d.name for d in list_datasets() if not d.synthetic}
    assert set(REAL_DATASETS) == set(COUNTS) and set(COUNTS) <= real


@pytest.mark.parametrize("name", list(COUNTS))
def test_counts_and_records(name: str, shared_data: Path) -> None:
    info = get_dataset_info(name)
    assert set(info.splits) == set(COUNTS[name])
    for f in info.source_files:
        assert (shared_data / f).is_file(), f
    for split, n in COUNTS[name].items():
        examples = load_dataset(name, split, data_dir=shared_data)
        assert len(examples) == n, (name, split)
        assert len({e.id for e in examples}) == n
        for e in examples:
            assert e.question.strip() and e.answer and e.dataset == name and e.answer_type == info.answer_type
            if e.answer_type == "choice":
                assert e.answer in info.choice_letters[: len(e.choices)] and "Answer choices: (A) " in e.question
            if e.answer_type == "yes_no":
                assert e.answer in ("yes", "no")
    assert answer_trigger(name).startswith("\nTherefore")


def test_ftcot_splits_partition_the_full_list(shared_data: Path) -> None:
    for name, d in REAL_DATASETS.items():
        if "all" not in d.splits:
            continue
        full = {e.id for e in load_dataset(name, "all", data_dir=shared_data)}
        for a, b in (("train", "test"), ("train_template", "test_template")):
            if a in d.splits:
                ta = {e.id for e in load_dataset(name, a, data_dir=shared_data)}
                tb = {e.id for e in load_dataset(name, b, data_dir=shared_data)}
                assert not ta & tb and (ta | tb == full or name == "asdiv"), (name, a)


def test_questions_and_golds_match_fine_tune_cot_unified_files(shared_data: Path) -> None:
    """Our readers of the original files agree with Fine-tune-CoT's converted lists, record by record."""
    pairs = {
        "svamp": "svamp/reasoning_teacher/svamp.json",
        "multiarith": "multiarith/reasoning_teacher/multiarith.json",
        "addsub": "addsub/reasoning_teacher/addsub.json",
        "singleeq": "singleeq/reasoning_teacher/single_eq.json",
        "coin_flip": "coin_flip/reasoning_teacher/coin_flip.json",
        "last_letters": "last_letters/reasoning_teacher/last_letter_concatenation.json",
        "tracking_shuffled_objects": "tracking_shuffled_objects/reasoning_teacher/tracking_shuffled_objects.json",
        "commonsenseqa": "commonsenseqa/reasoning_teacher/commonsense_qa.json",
        "strategyqa": "strategyqa/reasoning_teacher/strategy_qa.json",
    }
    for name, rel in pairs.items():
        ours = load_dataset(name, "all", data_dir=shared_data)
        theirs = json.loads((shared_data / rel).read_text())
        assert len(ours) == len(theirs)
        for e, t in zip(ours, theirs, strict=True):
            assert " ".join(e.question.split()) == " ".join(t["question"].split()), (name, e.id)
            gold = str(t["answer"]).lower().removesuffix(".0")
            assert e.answer.lower() == gold, (name, e.id)
    gsm = load_dataset("gsm8k", "test", data_dir=shared_data)
    theirs = json.loads((shared_data / "gsm8k/reasoning_teacher/gsm8k_test_only.json").read_text())
    assert [e.answer for e in gsm] == [str(t["answer"]).replace(",", "") for t in theirs]


def test_date_choices_agree_with_big_bench(shared_data: Path) -> None:
    """Fine-tune-CoT's shuffled choice order keeps BIG-bench's correct date under the gold letter."""
    bb = json.loads((shared_data / "date_understanding/kojima/task.json").read_text())["examples"]
    ours = load_dataset("date_understanding", "all", data_dir=shared_data)
    for e, b in zip(ours, bb, strict=True):
        assert set(e.choices) == set(b["target_scores"])
        right = next(k for k, v in b["target_scores"].items() if v == 1)
        assert e.choices["ABCDEF".index(e.answer)] == right


def test_gsm8k_dev_is_fus_validation_index(shared_data: Path) -> None:
    import numpy as np

    idx = np.load(shared_data / "gsm8k/fu_flant5/validation_index.npy")
    train = load_dataset("gsm8k", "train", data_dir=shared_data)
    dev = load_dataset("gsm8k", "dev", data_dir=shared_data)
    assert [e.id for e in dev] == [train[int(i)].id for i in idx]
    assert not {e.id for e in dev} & {e.id for e in load_dataset("gsm8k", "train_nodev", data_dir=shared_data)}
    assert dev[0].rationale and "<<" not in dev[0].rationale


def test_limit_and_unknowns(shared_data: Path) -> None:
    assert len(load_dataset("svamp", "test", limit=5, data_dir=shared_data)) == 5
    with pytest.raises(NotFound, match="known datasets: gsm8k, svamp"):
        load_dataset("gsm9k")
    with pytest.raises(KeyError):
        get_dataset_info("nope")
    with pytest.raises(NotFound, match="splits: train, test"):
        load_dataset("svamp", "validation", data_dir=shared_data)


def test_missing_data_dir_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotFound, match="COTDISTILL_DATA_DIR"):
        load_dataset("gsm8k", data_dir=tmp_path / "absent")
    monkeypatch.setenv("COTDISTILL_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(NotFound, match=r"absent \(from \$COTDISTILL_DATA_DIR\)"):
        load_dataset("gsm8k")
    # synthetic datasets need no folder at all
    assert len(load_dataset("synthetic_coin_flip", "dev")) == 200

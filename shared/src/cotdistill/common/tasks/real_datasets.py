"""The 13 real datasets: which files make each one and how its splits are cut.

Splits (see docs/datasets.md for the counts):

* ``train``/``test``: Fine-tune-CoT's ``<name>__default.json`` indices into the full list (GSM8K:
  the canonical train/test files, which those indices reproduce; AQuA: Flan's CoT train file and
  Kojima's test file; CommonsenseQA: train/dev files as in Fine-tune-CoT).
* ``train_template``/``test_template``: Fine-tune-CoT's ``__template.json`` (MultiArith, Date).
* ``all``: every record, in the order of Kojima's files (what Zero-shot-CoT evaluated).
* ``dev`` (GSM8K): Fu et al.'s 200 ``validation_index.npy`` questions from GSM8K train;
  ``train_nodev``: GSM8K train without them.
* ``dev`` (MultiArith): the last 60 questions of ``train`` (ours: no paper defines one; for
  checkpoint selection that never looks at a test question); ``train_nodev``: the other 360.
* ``flan_train`` (StrategyQA, CommonsenseQA/ECQA): Flan CoT files with human rationales.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cotdistill.common.tasks.loaders import originals as o
from cotdistill.common.tasks.loaders.split_files import ftcot_split, npy_indices
from cotdistill.common.tasks.records import AnswerType, Example
from cotdistill.common.tasks.specs import SPECS

Builder = Callable[[Path], list[Example]]


@dataclass(frozen=True)
class RealDataset:
    """One real dataset: its files (relative to the data dir) and a builder per split."""

    name: str
    description: str
    answer_type: AnswerType
    files: tuple[str, ...]
    splits: dict[str, Builder]
    default_split: str = "test"


def _cached(fn: Callable[[Path], list[Example]]) -> Callable[[Path], list[Example]]:
    return functools.lru_cache(maxsize=8)(fn)


def _ftcot(full: Builder, split_file: str, split: str) -> Builder:
    def build(root: Path) -> list[Example]:
        examples = full(root)
        return [examples[i] for i in ftcot_split(root / split_file, split, len(examples))]

    return build


def _ftcot_dataset(
    name: str,
    description: str,
    full: Builder,
    files: tuple[str, ...],
    split_stem: str,
    template: bool = False,
    extra: dict[str, Builder] | None = None,
) -> RealDataset:
    default = f"{split_stem}__default.json"
    splits: dict[str, Builder] = {
        "train": _ftcot(full, default, "train"),
        "test": _ftcot(full, default, "test"),
        "all": full,
    }
    all_files = (*files, default)
    if template:
        tfile = f"{split_stem}__template.json"
        splits["train_template"] = _ftcot(full, tfile, "train")
        splits["test_template"] = _ftcot(full, tfile, "test")
        all_files = (*all_files, tfile)
    splits.update(extra or {})
    return RealDataset(name, description, SPECS[name].answer_type, all_files, splits)


# ----------------------------------------------------------------------------- full lists
@_cached
def _svamp(root: Path) -> list[Example]:
    return o.kojima_math_json(root / "svamp/kojima/SVAMP.json", "svamp", ("Body", "Question"), "Answer")


@_cached
def _multiarith(root: Path) -> list[Example]:
    return o.kojima_math_json(root / "multiarith/kojima/MultiArith.json", "multiarith", ("sQuestion",), "lSolutions")


@_cached
def _addsub(root: Path) -> list[Example]:
    return o.kojima_math_json(root / "addsub/kojima/AddSub.json", "addsub", ("sQuestion",), "lSolutions")


@_cached
def _singleeq(root: Path) -> list[Example]:
    return o.kojima_math_json(root / "singleeq/kojima/questions.json", "singleeq", ("sQuestion",), "lSolutions")


@_cached
def _coin_flip(root: Path) -> list[Example]:
    return o.examples_json(root / "coin_flip/kojima/coin_flip.json", "coin_flip", "yes_no")


@_cached
def _last_letters(root: Path) -> list[Example]:
    return o.examples_json(root / "last_letters/kojima/last_letters.json", "last_letters", "text")


@_cached
def _date(root: Path) -> list[Example]:
    # The BIG-bench file always lists the right date first; Fine-tune-CoT's unified file holds the
    # shuffled choice order its splits, prompts and students use (checked against task.json in tests).
    return o.unified_choice_json(
        root / "date_understanding/reasoning_teacher/date_understanding.json", "date_understanding"
    )


@_cached
def _tracking(root: Path) -> list[Example]:
    return o.bigbench_choice(root / "tracking_shuffled_objects/kojima/task.json", "tracking_shuffled_objects")


@_cached
def _strategyqa(root: Path) -> list[Example]:
    return o.bigbench_yes_no(root / "strategyqa/kojima/task.json", "strategyqa")


@_cached
def _csqa(root: Path) -> list[Example]:
    train = o.csqa_jsonl(root / "commonsenseqa/kojima/train_rand_split.jsonl", "commonsenseqa")
    dev = o.csqa_jsonl(root / "commonsenseqa/kojima/dev_rand_split.jsonl", "commonsenseqa", id_offset=len(train))
    return train + dev


@_cached
def _gsm8k_train(root: Path) -> list[Example]:
    return o.gsm8k_jsonl(root / "gsm8k/openai_grade_school_math/train.jsonl", "gsm8k", "gsm8k:train")


@_cached
def _gsm8k_test(root: Path) -> list[Example]:
    return o.gsm8k_jsonl(root / "gsm8k/kojima/test.jsonl", "gsm8k", "gsm8k:test")


def _gsm8k_dev(root: Path) -> list[Example]:
    train = _gsm8k_train(root)
    return [train[i] for i in npy_indices(root / "gsm8k/fu_flant5/validation_index.npy", len(train))]


def _gsm8k_train_nodev(root: Path) -> list[Example]:
    dev = {e.id for e in _gsm8k_dev(root)}
    return [e for e in _gsm8k_train(root) if e.id not in dev]


MULTIARITH_DEV = 60


def _multiarith_dev(root: Path) -> list[Example]:
    return _ftcot(_multiarith, "multiarith/reasoning_teacher/multiarith__default.json", "train")(root)[-MULTIARITH_DEV:]


def _multiarith_train_nodev(root: Path) -> list[Example]:
    return _ftcot(_multiarith, "multiarith/reasoning_teacher/multiarith__default.json", "train")(root)[:-MULTIARITH_DEV]


def _gsm8k_split(split: str) -> Builder:
    # Fine-tune-CoT's gsm8k.json is train (7473) followed by test (1319); its split file indexes it.
    def build(root: Path) -> list[Example]:
        full = _gsm8k_train(root) + _gsm8k_test(root)
        return [full[i] for i in ftcot_split(root / "gsm8k/reasoning_teacher/gsm8k__default.json", split, len(full))]

    return build


@_cached
def _aqua_test(root: Path) -> list[Example]:
    return o.aqua_jsonl(root / "aqua/kojima/test.json", "aqua")


@_cached
def _aqua_train(root: Path) -> list[Example]:
    return o.flan_tsv(root / "aqua/flan_cot/aqua_train.tsv", "aqua", "choice", "aqua:flan_train")


@_cached
def _asdiv(root: Path) -> list[Example]:
    return o.asdiv_xml(root / "asdiv/official/ASDiv.xml", "asdiv")[0]


def _flan(path: str, name: str, kind: AnswerType) -> Builder:
    return _cached(lambda root: o.flan_tsv(root / path, name, kind, f"{name}:flan_train"))


REAL_DATASETS: dict[str, RealDataset] = {
    d.name: d
    for d in (
        RealDataset(
            "gsm8k",
            "GSM8K grade-school math word problems (Cobbe et al. 2021); gold solutions as rationales",
            "number",
            (
                "gsm8k/openai_grade_school_math/train.jsonl",
                "gsm8k/kojima/test.jsonl",
                "gsm8k/reasoning_teacher/gsm8k__default.json",
                "gsm8k/fu_flant5/validation_index.npy",
            ),
            {
                "train": _gsm8k_split("train"),
                "test": _gsm8k_split("test"),
                "dev": _gsm8k_dev,
                "train_nodev": _gsm8k_train_nodev,
            },
        ),
        _ftcot_dataset(
            "svamp",
            "SVAMP arithmetic word problems with variations (Patel et al. 2021)",
            _svamp,
            ("svamp/kojima/SVAMP.json",),
            "svamp/reasoning_teacher/svamp",
        ),
        _ftcot_dataset(
            "multiarith",
            "MultiArith multi-step arithmetic (Roy & Roth 2015)",
            _multiarith,
            ("multiarith/kojima/MultiArith.json",),
            "multiarith/reasoning_teacher/multiarith",
            template=True,
            extra={"dev": _multiarith_dev, "train_nodev": _multiarith_train_nodev},
        ),
        _ftcot_dataset(
            "addsub",
            "AddSub addition/subtraction word problems (Hosseini et al. 2014)",
            _addsub,
            ("addsub/kojima/AddSub.json",),
            "addsub/reasoning_teacher/addsub",
        ),
        _ftcot_dataset(
            "singleeq",
            "SingleEq single-equation word problems (Koncel-Kedziorski et al. 2015)",
            _singleeq,
            ("singleeq/kojima/questions.json",),
            "singleeq/reasoning_teacher/single_eq",
        ),
        RealDataset(
            "aqua",
            "AQuA-RAT algebra multiple choice A-E (Ling et al. 2017); train from Flan CoT with rationales",
            "choice",
            ("aqua/kojima/test.json", "aqua/flan_cot/aqua_train.tsv"),
            {"train": _aqua_train, "test": _aqua_test},
        ),
        RealDataset(
            "asdiv",
            "ASDiv diverse math word problems (Miao et al. 2020), single-number answers only",
            "number",
            ("asdiv/official/ASDiv.xml",),
            {"test": _asdiv, "all": _asdiv},
        ),
        _ftcot_dataset(
            "coin_flip",
            "Coin Flip, 4 people (Wei et al. 2022; Kojima et al.'s file)",
            _coin_flip,
            ("coin_flip/kojima/coin_flip.json",),
            "coin_flip/reasoning_teacher/coin_flip",
        ),
        _ftcot_dataset(
            "last_letters",
            "Last Letter Concatenation of 4 names (Wei et al. 2022; Kojima et al.'s file)",
            _last_letters,
            ("last_letters/kojima/last_letters.json",),
            "last_letters/reasoning_teacher/last_letter_concatenation",
        ),
        _ftcot_dataset(
            "date_understanding",
            "BIG-bench Date Understanding, choices A-F (Fine-tune-CoT's choice order)",
            _date,
            ("date_understanding/reasoning_teacher/date_understanding.json", "date_understanding/kojima/task.json"),
            "date_understanding/reasoning_teacher/date_understanding",
            template=True,
        ),
        _ftcot_dataset(
            "tracking_shuffled_objects",
            "BIG-bench Tracking Shuffled Objects (3 objects), choices A-C",
            _tracking,
            ("tracking_shuffled_objects/kojima/task.json",),
            "tracking_shuffled_objects/reasoning_teacher/tracking_shuffled_objects",
        ),
        _ftcot_dataset(
            "commonsenseqa",
            "CommonsenseQA choices A-E (Talmor et al. 2019): train = train split, test = dev split",
            _csqa,
            (
                "commonsenseqa/kojima/train_rand_split.jsonl",
                "commonsenseqa/kojima/dev_rand_split.jsonl",
                "commonsenseqa/flan_cot/ecqa_train.tsv",
            ),
            "commonsenseqa/reasoning_teacher/commonsense_qa",
            extra={"flan_train": _flan("commonsenseqa/flan_cot/ecqa_train.tsv", "commonsenseqa", "choice")},
        ),
        _ftcot_dataset(
            "strategyqa",
            "StrategyQA yes/no implicit multi-hop questions (Geva et al. 2021) with BIG-bench explanations",
            _strategyqa,
            ("strategyqa/kojima/task.json", "strategyqa/flan_cot/strategyqa_train.tsv"),
            "strategyqa/reasoning_teacher/strategy_qa",
            extra={"flan_train": _flan("strategyqa/flan_cot/strategyqa_train.tsv", "strategyqa", "yes_no")},
        ),
    )
}

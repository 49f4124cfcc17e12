"""In-context exemplars for few-shot formats, wherever a dataset can supply them.

Sources, in order: synthetic tasks generate their own (no files); otherwise the dataset's train
split when it has human rationales; otherwise Wei et al.'s exemplars from
``few_shot_cot_prompts.json`` (Coin Flip, Last Letters, ...). A dataset with none of these
(e.g. Tracking Shuffled Objects for CoT) gets an InvalidArgument naming it.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.tasks.prompt_files import FEW_SHOT_KEYS, few_shot_prompt
from cotdistill.common.tasks.synthetic import STYLES, SYNTHETIC_TASKS, generate_synthetic, split_seed


@dataclass(frozen=True)
class Exemplar:
    """One solved question: rationale without the final answer sentence."""

    question: str
    rationale: str
    answer: str


def wei_exemplars(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> list[Exemplar]:
    """Wei et al.'s exemplars for ``dataset``, split into question, rationale and answer."""
    out = []
    # The file's exemplars are one newline apart: a new one starts at each line beginning "Q: ".
    for block in re.split(r"\n+(?=Q: )", few_shot_prompt(dataset, data_dir)):
        q, sep, a = block.partition("\nA: ")
        m = re.search(r"\s*The answer is (.+?)\.?\s*$", a)
        if not sep or not q.startswith("Q: ") or m is None:
            continue
        out.append(Exemplar(q[3:].strip(), a[: m.start()].strip(), m.group(1).strip()))
    return out


def synthetic_exemplars(dataset: str, k: int) -> list[Exemplar]:
    """``k`` generated exemplars in the family's first rationale style, from a seed of their own."""
    family = SYNTHETIC_TASKS[dataset].family
    examples = generate_synthetic(dataset, k, seed=split_seed(dataset, "exemplars"), style=STYLES[family][0])
    return [Exemplar(e.question, e.rationale or "", e.answer) for e in examples]


@functools.lru_cache(maxsize=64)
def _cot_exemplars(dataset: str, k: int, data_dir: str | None) -> tuple[Exemplar, ...]:
    if dataset in SYNTHETIC_TASKS:
        return tuple(synthetic_exemplars(dataset, k))
    from cotdistill.common.tasks.registry import get_dataset_info, load_dataset

    info = get_dataset_info(dataset)
    if "train" in info.splits:
        with_rationale = [e for e in load_dataset(dataset, "train", data_dir=data_dir) if e.rationale]
        if len(with_rationale) >= k:
            return tuple(Exemplar(e.question, (e.rationale or "").strip(), e.answer) for e in with_rationale[:k])
    if dataset in FEW_SHOT_KEYS:
        return tuple(wei_exemplars(dataset, data_dir)[:k])
    raise InvalidArgument("dataset", f"{dataset!r} has no exemplars with rationales for a few-shot CoT format")


def cot_exemplars(dataset: str, k: int, data_dir: str | os.PathLike[str] | None = None) -> list[Exemplar]:
    """Up to ``k`` exemplars with rationales (see the module docstring for the sources)."""
    return list(_cot_exemplars(dataset, k, str(data_dir) if data_dir is not None else None))


@functools.lru_cache(maxsize=64)
def _answer_exemplars(dataset: str, k: int, data_dir: str | None) -> tuple[Exemplar, ...]:
    if dataset in SYNTHETIC_TASKS:
        return tuple(synthetic_exemplars(dataset, k))
    from cotdistill.common.tasks.registry import get_dataset_info, load_dataset

    info = get_dataset_info(dataset)
    split = "train" if "train" in info.splits else info.splits[0]
    return tuple(Exemplar(e.question, "", e.answer) for e in load_dataset(dataset, split, limit=k, data_dir=data_dir))


def answer_exemplars(dataset: str, k: int, data_dir: str | os.PathLike[str] | None = None) -> list[Exemplar]:
    """The first ``k`` train questions with their answers (no rationale needed)."""
    return list(_answer_exemplars(dataset, k, str(data_dir) if data_dir is not None else None))

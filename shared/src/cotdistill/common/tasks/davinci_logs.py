"""Parser of Kojima et al.'s Zero-shot-CoT run logs (``log/<dataset>_zero_shot_cot.log``).

Each log holds a ``Namespace(...)`` header, then one block per question::

    *************************
    12st data
    1_th_sampling
    Q: <question>
    A: Let's think step by step.<stage-1 text> <trigger><stage-2 text>
    pred_before : <stage-2 text>
    pred_after : <their cleansed answer>
    pred_list : [...]
    pred_mode : <answer>
    GT : <gold>
    *************************

and ends with ``accuracy : <percent>``. The texts are real text-davinci-002 outputs, which makes
them a fixed test of answer extraction against the paper's own figure.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cotdistill.common.tasks.errors import MalformedDataError

# Log file stem -> our dataset name.
LOG_DATASETS = {
    "addsub": "addsub",
    "aqua": "aqua",
    "coin_flip": "coin_flip",
    "date_understanding": "date_understanding",
    "last_letters": "last_letters",
    "singleeq": "singleeq",
    "strategyqa": "strategyqa",
}
COT_PREFIX = "A: Let's think step by step."
_HEADER = re.compile(r"^(\d+)st data$")


@dataclass(frozen=True)
class LoggedItem:
    """One question of a log: the teacher's two stages and the paper's reading of them."""

    index: int  # 1-based position in the log (shuffled DataLoader order)
    line: int  # line of the "Nst data" header
    question: str
    rationale: str  # stage-1 text after "Let's think step by step."
    answer_text: str  # stage-2 text after the trigger (``pred_before``)
    pred_after: str  # Kojima et al.'s cleansed answer
    gold: str


@dataclass(frozen=True)
class DavinciLog:
    """A parsed log: its dataset, the trigger used, every item and the logged accuracy (percent)."""

    path: str
    dataset: str
    trigger: str
    items: tuple[LoggedItem, ...]
    accuracy: float


def _field(block: list[str], name: str, path: Path, line: int) -> tuple[int, str]:
    prefix = f"{name} :"
    for i, text in enumerate(block):
        if text.startswith(prefix):
            return i, text[len(prefix) :].removeprefix(" ")
    raise MalformedDataError(path, line, name, "missing line")


def parse_davinci_log(path: str | os.PathLike[str]) -> DavinciLog:
    """Parse one Zero-shot-CoT log; errors name file:line and the missing part."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise MalformedDataError(path, None, None, "file not found") from None
    header = next((ln for ln in lines[:5] if ln.startswith("Namespace(")), None)
    if header is None:
        raise MalformedDataError(path, 2, "Namespace", "missing run header")
    m = re.search(r"direct_answer_trigger='((?:[^'\\]|\\.)*)'", header)
    if m is None:
        raise MalformedDataError(path, 2, "direct_answer_trigger", "missing in run header")
    trigger = m.group(1).encode().decode("unicode_escape")
    stem = path.name.removesuffix("_zero_shot_cot.log")
    dataset = LOG_DATASETS.get(stem, stem)

    starts = [i for i, ln in enumerate(lines) if _HEADER.match(ln)]
    items = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        block = lines[start:end]
        lineno = start + 1
        qi = next((i for i, ln in enumerate(block) if ln.startswith("Q: ")), None)
        if qi is None:
            raise MalformedDataError(path, lineno, "Q", "missing question line")
        pb, pred_before_first = _field(block, "pred_before", path, lineno)
        pa, pred_after = _field(block, "pred_after", path, lineno)
        _, gold = _field(block, "GT", path, lineno)
        # pred_before spans lines up to pred_after (the stage-2 text may contain newlines).
        answer_text = "\n".join([pred_before_first, *block[pb + 1 : pa]])
        body = "\n".join(block[qi:pb])
        ai = body.find("\n" + COT_PREFIX)
        if ai < 0:
            raise MalformedDataError(path, lineno + qi, "A", f"missing {COT_PREFIX!r}")
        question = body[3:ai]
        after = body[ai + 1 + len(COT_PREFIX) :]
        # The shown text is stage 1 + " " + trigger + stage 2; some logs print stage 2 with its
        # leading space stripped (strategyqa), and stage 2 may itself repeat the trigger (aqua).
        # In the strategyqa log pred_before is already trimmed (": Yes" shown, "Yes" logged): there
        # the text after the last trigger is the stage-2 output.
        shown, stage2 = after.rstrip(), answer_text.strip()
        head = shown[: len(shown) - len(stage2)].rstrip()
        if shown.endswith(stage2) and head.endswith(trigger):
            cut = len(head) - len(trigger)
        else:
            cut = after.rfind(trigger)
            if cut < 0:
                raise MalformedDataError(path, lineno + qi, "A", "no answer trigger after the rationale")
            answer_text = after[cut + len(trigger) :]
        items.append(
            LoggedItem(
                index=int(_HEADER.match(lines[start]).group(1)),  # type: ignore[union-attr]
                line=lineno,
                question=question,
                rationale=after[:cut].removesuffix(" "),
                answer_text=answer_text,
                pred_after=pred_after.strip(),
                gold=gold.strip(),
            )
        )
    acc = [ln for ln in lines if ln.startswith("accuracy : ")]
    if not acc:
        raise MalformedDataError(path, len(lines), "accuracy", "missing final accuracy line")
    return DavinciLog(str(path), dataset, trigger, tuple(items), float(acc[-1].split(":", 1)[1]))


@dataclass(frozen=True)
class Parity:
    """How our extraction compares with a log (accuracies in percent)."""

    dataset: str
    items: int
    logged_accuracy: float
    paper_rule_accuracy: float  # our raw extraction, scored by exact string match (their rule)
    project_accuracy: float  # our normalized extraction, scored by answers_match (numeric tolerance)
    same_answer: int  # items where our raw answer equals their cleansed answer exactly
    # mode="kojima" on the whole shown text (rationale + trigger + stage 2), as a one-stage reader
    # sees it: items whose answer equals ``pred_after`` (no answer counts as ""), and accuracy.
    kojima_same_answer: int = 0
    kojima_accuracy: float = 0.0
    # mode="project" on the same whole text: it finds answers in the rationale where theirs found none.
    project_whole_text_same_answer: int = 0

    def to_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


def reproduce_accuracy(log: DavinciLog) -> Parity:
    """Score our extraction of every stage-2 text of ``log`` against the logged gold.

    ``paper_rule_accuracy`` reproduces the paper's procedure with our code: Kojima et al.
    compare the cleansed answer with the gold as strings (so "12.30" != "12.3").
    ``project_accuracy`` is how this project scores (normalized answers, numeric tolerance).
    """
    from cotdistill.common.tasks.extraction import answers_match, extract_answer
    from cotdistill.common.tasks.specs import spec_for

    kind = spec_for(log.dataset).answer_type
    paper = project = same = kojima_same = kojima_correct = whole_same = 0
    for item in log.items:
        raw = extract_answer(item.answer_text, log.dataset, after_trigger=True, normalize=False)
        paper += (raw or "") == item.gold
        same += (raw or "") == item.pred_after
        pred = extract_answer(item.answer_text, log.dataset, after_trigger=True)
        project += answers_match(pred, item.gold, kind)
        kojima = extract_answer(whole_text(log, item), log.dataset, normalize=False, mode="kojima") or ""
        kojima_same += kojima == item.pred_after
        kojima_correct += kojima == item.gold
        whole = extract_answer(whole_text(log, item), log.dataset, normalize=False) or ""
        whole_same += whole == item.pred_after
    n = max(1, len(log.items))
    return Parity(
        log.dataset,
        len(log.items),
        log.accuracy,
        100.0 * paper / n,
        100.0 * project / n,
        same,
        kojima_same_answer=kojima_same,
        kojima_accuracy=100.0 * kojima_correct / n,
        project_whole_text_same_answer=whole_same,
    )


def whole_text(log: DavinciLog, item: LoggedItem) -> str:
    """The completion as the log shows it: rationale, the trigger, then the stage-2 text."""
    return f"{item.rationale} {log.trigger}{item.answer_text}"

"""The rationales a scoring job scores: a dataset's gold ones, or those of existing sample shards.

Either way each rationale is paired with this teacher's own prompt for its question (the named
teacher prompt format, as a conversation for a chat teacher), rebuilt from the dataset record:
a shard's ``prompt`` column is the prompt *its* teacher saw, possibly through another chat template.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cotdistill.common import tasks
from cotdistill.common.errors import ConfigError
from cotdistill.common.samples import SampleRecord, read_records
from cotdistill.pipeline.run_config import ScoringSection
from cotdistill.pipeline.scoring.units import ScoreRef

DATASETS_WITH_RATIONALES = (
    "gsm8k (train, dev, train_nodev), aqua (train), strategyqa and commonsenseqa (flan_train), synthetic_*"
)

PromptFn = Callable[[tasks.Example], tuple[str, tasks.ChatPrompt | None]]


def prompt_renderer(section: ScoringSection) -> PromptFn:
    """(raw prompt, conversation) of an example in the section's teacher prompt format."""

    def render(example: tasks.Example) -> tuple[str, tasks.ChatPrompt | None]:
        try:
            raw = tasks.render_teacher_prompt(section.prompt_format, example)
            chat = (
                None
                if section.prompt_template == "raw"
                else tasks.teacher_chat_prompt(section.prompt_format, example, system=section.system_prompt)
            )
        except tasks.UnknownFormatError as err:
            raise ConfigError(str(err), key="scoring.prompt_format") from None
        return raw, chat

    return render


def load_split(dataset: str, split: str, key: str) -> list[tasks.Example]:
    """A dataset split; unknown names become errors naming the recipe key."""
    try:
        return tasks.load_dataset(dataset, split)
    except tasks.UnknownDatasetError as err:
        raise ConfigError(str(err), key=f"{key}.dataset") from None
    except tasks.UnknownSplitError as err:
        raise ConfigError(str(err), key=f"{key}.split") from None


def gold_rationales(section: ScoringSection) -> list[ScoreRef]:
    """The dataset's examples that have a rationale (the first ``limit``), ready to score."""
    examples = [e for e in load_split(section.dataset, section.split, "scoring") if e.rationale]
    if not examples:
        raise ConfigError(
            f"{section.dataset}/{section.split} has no rationales to score; datasets with rationales: "
            f"{DATASETS_WITH_RATIONALES}; or score sample shards with scoring.paths",
            key="scoring.dataset",
        )
    render = prompt_renderer(section)
    refs = []
    for e in examples[: section.limit]:
        raw, chat = render(e)
        refs.append(
            ScoreRef(
                id=e.id,
                prompt=raw,
                gold=e.answer,
                chat=chat,
                rationale=e.rationale or "",
                separator=section.separator,
                dataset=e.dataset or section.dataset,
                split=section.split,
                prediction=e.answer,  # a gold rationale reaches the gold answer by definition
                correct=True,
            )
        )
    return refs


def shard_files(paths: list[str]) -> list[Path]:
    """Parquet files of ``scoring.paths`` (directories contribute their ``*.parquet``, sorted)."""
    files: list[Path] = []
    for i, raw in enumerate(paths):
        p = Path(raw)
        if p.is_dir():
            found = sorted(p.glob("*.parquet"))
            if not found:
                raise ConfigError(f"no *.parquet files in {p}", key=f"scoring.paths[{i}]")
            files.extend(found)
        elif p.suffix == ".parquet" and p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"{p}: not a Parquet sample shard or a directory of them", key=f"scoring.paths[{i}]")
    return files


def shard_rationales(section: ScoringSection) -> list[ScoreRef]:
    """The rows of the shards in ``scoring.paths`` (the first ``limit``), rescored by this teacher.

    Each row keeps its example id, sample index and answer fields (what its own teacher
    answered, and whether that was right); its question comes from its dataset record.
    """
    render = prompt_renderer(section)
    splits: dict[tuple[str, str], dict[str, tasks.Example]] = {}
    refs: list[ScoreRef] = []
    for path in shard_files(section.paths):
        records, _ = read_records(path)
        for row, rec in enumerate(records):
            if section.limit is not None and len(refs) >= section.limit:
                return refs
            if not rec.rationale.strip():
                continue
            example = _example_of(rec, section, splits, f"{path}: row {row}")
            raw, chat = render(example)
            refs.append(
                ScoreRef(
                    id=example.id,
                    prompt=raw,
                    gold=rec.gold if rec.gold is not None else example.answer,
                    chat=chat,
                    sample_index=rec.sample_index,
                    rationale=rec.rationale,
                    separator=section.separator,
                    dataset=example.dataset or rec.dataset,
                    split=rec.split or section.split,
                    answer_text=rec.answer_text,
                    prediction=rec.prediction,
                    correct=rec.correct,
                    finish_reason=rec.finish_reason,
                )
            )
    if not refs:
        raise ConfigError("the shards hold no rationales to score", key="scoring.paths")
    return refs


def _example_of(
    rec: SampleRecord,
    section: ScoringSection,
    splits: dict[tuple[str, str], dict[str, tasks.Example]],
    where: str,
) -> tasks.Example:
    key = (rec.dataset or section.dataset, rec.split or section.split)
    if key not in splits:
        splits[key] = {e.id: e for e in load_split(key[0], key[1], "scoring")}
    example = splits[key].get(rec.example_id)
    if example is None:
        raise ConfigError(
            f"{where}: example {rec.example_id!r} is not in {key[0]}/{key[1]} (its question is needed for the "
            "teacher's prompt)",
            key="scoring.paths",
        )
    return example


def rationales(section: ScoringSection) -> list[ScoreRef]:
    """What the section scores: the shards of ``paths`` when given, else the gold rationales."""
    return shard_rationales(section) if section.paths else gold_rationales(section)

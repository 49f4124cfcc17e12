"""Custom datasets: JSONL, CSV or Parquet files, or a ``datasets`` folder saved with
``save_to_disk``, mapped onto :class:`Example` through a column mapping.

    mapping = ColumnMapping(question="prompt", answer="label", rationale="explanation")
    examples = load_custom_file("data/my.csv", name="mine", answer_type="number", mapping=mapping)
    register_custom_dataset("mine", {"train": "data/train.jsonl", "test": "data/test.jsonl"},
                            answer_type="number", mapping=mapping)
    load_dataset("mine", "test")

Errors name ``file:line`` (JSONL, CSV) or ``file[row N]`` (Parquet, ``datasets``) and the column.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cotdistill.common.tasks.errors import MalformedDataError
from cotdistill.common.tasks.extraction import normalize_answer, split_gsm8k_answer
from cotdistill.common.tasks.loaders.originals import LETTERS, render_choices
from cotdistill.common.tasks.loaders.readers import read_jsonl
from cotdistill.common.tasks.records import ANSWER_TYPES, AnswerType, DatasetInfo, Example

FileFormat = Literal["jsonl", "csv", "parquet", "hf_disk"]


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds what. ``choices``: a list column, or a "|"-separated string in CSV."""

    question: str = "question"
    answer: str = "answer"
    rationale: str | None = None
    id: str | None = None
    choices: str | None = None


def detect_format(path: Path) -> FileFormat:
    """File format from the suffix (``.jsonl``/``.json``, ``.csv``, ``.parquet``) or a saved folder."""
    if path.is_dir():
        return "hf_disk"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise MalformedDataError(path, None, None, "unknown file type: use .jsonl, .csv, .parquet or a save_to_disk folder")


def _rows(path: Path, fmt: FileFormat, split: str | None) -> Iterator[tuple[int | str, Mapping[str, Any]]]:
    """(where, row) pairs: ``where`` is a 1-based line (JSONL, CSV) or "row N" (others)."""
    if fmt == "jsonl":
        yield from read_jsonl(path)
    elif fmt == "csv":
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                yield reader.line_num, row
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for a bad file
            raise MalformedDataError(path, None, None, f"not a readable Parquet file: {err}") from None
        for i, row in enumerate(table.to_pylist()):
            yield f"row {i}", row
    else:
        yield from _hf_rows(path, split)


def _hf_rows(path: Path, split: str | None) -> Iterator[tuple[int | str, Mapping[str, Any]]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise MalformedDataError(path, None, None, f"not a datasets save_to_disk folder: {err}") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None or split not in ds:
            raise MalformedDataError(path, None, "split", f"choose one of the saved splits: {', '.join(ds)}")
        ds = ds[split]
    for i, row in enumerate(ds):
        yield f"row {i}", row


def _column(row: Mapping[str, Any], column: str, path: Path, where: int | str) -> Any:
    if column not in row:
        raise MalformedDataError(path, where, column, f"missing column (columns: {', '.join(map(str, row))})")
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MalformedDataError(path, where, column, "empty value")
    return value


def load_custom_file(
    path: str | os.PathLike[str],
    *,
    name: str,
    answer_type: AnswerType,
    mapping: ColumnMapping | None = None,
    file_format: FileFormat | None = None,
    split: str | None = None,
) -> list[Example]:
    """Examples from one file (or ``datasets`` folder); ``split`` picks a DatasetDict split.

    Number answers may be GSM8K-style ("...#### 42"); the part before "####" becomes the
    rationale when no rationale column is mapped. Choice answers are letters or the choice text.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type: {answer_type!r} is not one of {', '.join(ANSWER_TYPES)}")
    m = mapping or ColumnMapping()
    p = Path(path)
    if not p.exists():
        raise MalformedDataError(p, None, None, "file not found")
    fmt = file_format or detect_format(p)
    out: list[Example] = []
    for i, (where, row) in enumerate(_rows(p, fmt, split)):
        question = str(_column(row, m.question, p, where)).strip()
        raw_answer = _column(row, m.answer, p, where)
        rationale = None
        if m.rationale is not None:
            value = row.get(m.rationale)
            rationale = str(value).strip() if value not in (None, "") else None
        choices: tuple[str, ...] = ()
        if m.choices is not None:
            value = _column(row, m.choices, p, where)
            items = value.split("|") if isinstance(value, str) else list(value)
            choices = tuple(str(c).strip() for c in items)
            if "Answer choices:" not in question:
                question = f"{question} {render_choices(choices)}"
        text = str(raw_answer)
        try:
            if answer_type == "number" and "####" in text:
                body, answer = split_gsm8k_answer(text)
                rationale = rationale or body or None
            elif answer_type == "choice" and choices and text.strip() in choices:
                answer = LETTERS[choices.index(text.strip())]
            else:
                answer = normalize_answer(text, answer_type)
        except ValueError as err:
            raise MalformedDataError(p, where, m.answer, str(err)) from None
        if answer_type == "choice" and choices and LETTERS.index(answer) >= len(choices):
            raise MalformedDataError(p, where, m.answer, f"letter {answer} beyond {len(choices)} choices")
        ex_id = f"{name}:{row[m.id]}" if m.id is not None and row.get(m.id) is not None else f"{name}:{i}"
        out.append(Example(ex_id, question, answer, answer_type, choices, rationale, str(p), name))
    if len({e.id for e in out}) != len(out):
        raise MalformedDataError(p, None, m.id or "id", "ids are not unique")
    return out


def register_custom_dataset(
    name: str,
    splits: Mapping[str, str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    answer_type: AnswerType,
    mapping: ColumnMapping | None = None,
    choice_letters: str = "",
    description: str = "",
    replace: bool = False,
) -> DatasetInfo:
    """Register files as dataset ``name`` (one path = split "test"); loads are checked lazily.

    A ``datasets`` DatasetDict folder given as one path registers each of its saved splits.
    """
    from cotdistill.common.tasks.registry import register_dataset

    if isinstance(splits, (str, os.PathLike)):
        path = Path(splits)
        if path.is_dir() and (path / "dataset_dict.json").is_file():
            import json

            names = json.loads((path / "dataset_dict.json").read_text())["splits"]
            splits = {s: path for s in names}
        else:
            splits = {"test": path}
    paths = {s: Path(p) for s, p in splits.items()}

    def loader(split: str) -> Any:
        return lambda: load_custom_file(paths[split], name=name, answer_type=answer_type, mapping=mapping, split=split)

    letters = choice_letters or ("ABCDE" if answer_type == "choice" else "")
    return register_dataset(
        name,
        {s: loader(s) for s in paths},
        answer_type=answer_type,
        description=description or f"custom dataset from {', '.join(sorted({str(p) for p in paths.values()}))}",
        choice_letters=letters,
        source_files=tuple(str(p) for p in paths.values()),
        replace=replace,
    )

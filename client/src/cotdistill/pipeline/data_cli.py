"""``cotdistill data``: inspect datasets and extract answers from completions.

    cotdistill data list [--json]
    cotdistill data show gsm8k --split dev -n 3
    cotdistill data stats aqua --json
    cotdistill data formats
    cotdistill data import completions.jsonl gsm8k --split train --out runs/imported
    echo '{"completion": "... The answer is 1,234."}' | cotdistill data extract gsm8k

Errors (unknown dataset, malformed line) raise project errors; ``cli.main`` prints them as one
line and exits with code 2.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.samples import ShardMetadata, TeacherFacts, write_shard
from cotdistill.common.tasks import (
    Example,
    ExtractionMode,
    extract_answer,
    filter_samples,
    get_dataset_info,
    import_completions,
    list_datasets,
    list_formats,
    load_dataset,
    parse_student_completion,
)

data_app = typer.Typer(help="Datasets: list, show, stats, answer extraction.", no_args_is_help=True)
# No emoji codes (ids such as "gsm8k:train:1" contain ":train:") and no markup from data text.
out = Console(soft_wrap=True, emoji=False, highlight=False)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder with the real datasets (default: $COTDISTILL_DATA_DIR or ../shared/data)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _example_dict(e: Example) -> dict[str, Any]:
    return {
        "id": e.id,
        "question": e.question,
        "answer": e.answer,
        "answer_type": e.answer_type,
        "choices": list(e.choices),
        "rationale": e.rationale,
        "source": e.source,
        "dataset": e.dataset,
    }


@data_app.command("list")
def list_command(as_json: AsJson = False) -> None:
    """Every dataset name with its answer type and splits."""
    infos = list_datasets()
    if as_json:
        _print_json(
            [
                {
                    "name": i.name,
                    "description": i.description,
                    "answer_type": i.answer_type,
                    "splits": list(i.splits),
                    "synthetic": i.synthetic,
                    "source_files": list(i.source_files),
                }
                for i in infos
            ]
        )
        return
    table = Table("dataset", "kind", "answer", "splits", "description")
    for i in infos:
        kind = "synthetic" if i.synthetic else "real"
        table.add_row(i.name, kind, i.answer_type, ", ".join(i.splits), escape(i.description))
    out.print(table)


@data_app.command("show")
def show_command(
    dataset: Annotated[str, typer.Argument(help="Dataset name (see `cotdistill data list`).")],
    split: Annotated[str | None, typer.Option("--split", "-s", help="Split (default: the dataset's default).")] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="How many examples.")] = 3,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """The first N examples of a split."""
    info = get_dataset_info(dataset)
    examples = load_dataset(dataset, split or info.default_split, limit=n, data_dir=data_dir)
    if as_json:
        _print_json([_example_dict(e) for e in examples])
        return
    for e in examples:
        table = Table(show_header=False, title=escape(e.id), title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        table.add_row("question", escape(e.question))
        table.add_row("answer", escape(f"{e.answer} ({e.answer_type})"))
        if e.rationale:
            table.add_row("rationale", escape(e.rationale))
        table.add_row("source", escape(e.source))
        out.print(table)


def _stats(dataset: str, data_dir: Path | None) -> dict[str, Any]:
    info = get_dataset_info(dataset)
    splits: dict[str, Any] = {}
    example: Example | None = None
    for split in info.splits:
        examples = load_dataset(dataset, split, data_dir=data_dir)
        answers = Counter(e.answer for e in examples)
        splits[split] = {
            "count": len(examples),
            "with_rationale": sum(e.rationale is not None for e in examples),
            "distinct_answers": len(answers),
            "top_answers": [[a, c] for a, c in answers.most_common(5)],
            "mean_question_chars": round(sum(len(e.question) for e in examples) / max(1, len(examples)), 1),
        }
        if example is None and examples:
            example = examples[0]
    return {
        "dataset": dataset,
        "description": info.description,
        "answer_type": info.answer_type,
        "choice_letters": info.choice_letters,
        "synthetic": info.synthetic,
        "source_files": list(info.source_files),
        "splits": splits,
        "example": _example_dict(example) if example else None,
    }


@data_app.command("stats")
def stats_command(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Counts per split, answer type and distribution, and an example record."""
    stats = _stats(dataset, data_dir)
    if as_json:
        _print_json(stats)
        return
    table = Table("split", "examples", "with rationale", "distinct answers", "top answers", "mean question chars",
                  title=f"{dataset} ({stats['answer_type']})", title_justify="left")  # fmt: skip
    for split, s in stats["splits"].items():
        top = escape(", ".join(f"{a}:{c}" for a, c in s["top_answers"]))
        table.add_row(split, str(s["count"]), str(s["with_rationale"]), str(s["distinct_answers"]), top,
                      str(s["mean_question_chars"]))  # fmt: skip
    out.print(table)
    if stats["example"]:
        e = stats["example"]
        out.print(f"[bold]example[/] {escape(e['id'])}: {escape(e['question'])}\n[bold]answer[/] {escape(e['answer'])}")


@data_app.command("formats")
def formats_command(as_json: AsJson = False) -> None:
    """Teacher prompt formats and student (prompt, completion) formats."""
    formats = list_formats()
    if as_json:
        _print_json(
            [{"name": f.name, "kind": f.kind, "description": f.description, "stop": list(f.stop)} for f in formats]
        )
        return
    table = Table("format", "kind", "stop", "description")
    for f in formats:
        table.add_row(f.name, f.kind, escape(json.dumps(list(f.stop))), escape(f.description))
    out.print(table)


@data_app.command("extract")
def extract_command(
    dataset: Annotated[str, typer.Argument(help="Dataset name or answer type (number, choice, yes_no, text).")],
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="Student format of every completion (a line's `format` wins).")
    ] = None,
    after_trigger: Annotated[
        bool, typer.Option("--after-trigger", help="Completions are Zero-shot-CoT stage-2 texts (first candidate).")
    ] = False,
    mode: Annotated[
        ExtractionMode,
        typer.Option(
            "--mode",
            help="project (default): this project's rules; kojima: Zero-shot-CoT's own answer cleansing "
            "(reproduces the paper's figures; no answer when the answer part holds none).",
        ),
    ] = "project",
) -> None:
    """Read JSONL with `completion` (optional `format`) on stdin; write each line with `answer` added.

    All lines are checked before anything is written, so a malformed line leaves no partial output.
    """
    extract_answer("", dataset)  # unknown names fail before reading stdin
    results = []
    for lineno, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        where = f"<stdin>:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidArgument(where, f"invalid JSON: {err.msg} (column {err.colno})") from None
        if not isinstance(record, dict):
            raise InvalidArgument(where, "expected a JSON object")
        completion = record.get("completion")
        if not isinstance(completion, str):
            raise InvalidArgument(f"{where}: completion", "missing or not a string")
        fmt = record.get("format", format)
        if fmt is not None and not isinstance(fmt, str):
            raise InvalidArgument(f"{where}: format", "not a string")
        if fmt:
            try:
                _, raw = parse_student_completion(fmt, completion)
            except InvalidArgument as err:
                raise InvalidArgument(f"{where}: format", str(err).split(": ", 1)[-1]) from None
            answer = extract_answer(raw, dataset, after_trigger=True, mode=mode)
        else:
            answer = extract_answer(completion, dataset, after_trigger=after_trigger, mode=mode)
        results.append({**record, "answer": answer})
    sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))


@data_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="JSONL of completions (see docs/datasets.md, 'Importing').")],
    dataset: Annotated[str, typer.Argument(help="Dataset the questions belong to.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder; the shard goes to OUT/samples/.")],
    split: Annotated[str, typer.Option("--split", "-s", help="Split the example ids/questions belong to.")] = "train",
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Turn completions generated elsewhere into a sample shard the filter and train stages read.

    The whole file is validated before anything is written; the shard is written atomically.
    """
    records = import_completions(file, dataset, split, data_dir=data_dir)
    if not records:
        raise InvalidArgument("file", f"{file} holds no completions")
    shard = out_dir / "samples" / "part-00000.parquet"
    metadata = ShardMetadata(
        teacher=TeacherFacts(model_id="imported"),
        job={"kind": "import", "source": str(file), "dataset": dataset, "split": split},
    )
    write_shard(shard, records, metadata)
    _, stats = filter_samples(records)
    summary = {"shard": str(shard), "samples": len(records), "would_keep": stats.to_dict()}
    if as_json:
        _print_json(summary)
        return
    dropped = ", ".join(f"{k} {v}" for k, v in stats.dropped.items() if v) or "none"
    out.print(
        f"imported {len(records)} samples of {stats.examples_total} examples -> {escape(str(shard))}\n"
        f"the filter stage would keep {stats.kept} ({stats.kept_fraction:.1%}); dropped: {dropped}"
    )

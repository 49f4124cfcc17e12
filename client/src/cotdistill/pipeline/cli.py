"""``cotdistill`` command line: serve services, validate recipes, run the pipeline."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.config import dump_config, load_located_config
from cotdistill.common.errors import ConfigError, CotdistillError
from cotdistill.pipeline.align_cli import align as align_command
from cotdistill.pipeline.data_cli import data_app
from cotdistill.pipeline.eval_cli import install as install_eval
from cotdistill.pipeline.models_cli import models_app
from cotdistill.pipeline.recipe_checks import check_recipe
from cotdistill.pipeline.run_config import RunConfig
from cotdistill.pipeline.sample_cli import sample as sample_command
from cotdistill.pipeline.sample_cli import score as score_command
from cotdistill.pipeline.stages import STAGES
from cotdistill.pipeline.train_cli import register as register_train

app = typer.Typer(
    help="Distill chain-of-thought from a teacher into a small student.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Run recipes (YAML).", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.command("sample")(sample_command)
app.command("score")(score_command)
app.command("align")(align_command)
install_eval(app)
register_train(app)

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

SERVICE_GROUP = "cotdistill.services"
DISTRIBUTIONS = (
    "cotdistill-shared",
    "cotdistill-teacher",
    "cotdistill-trainer",
    "cotdistill-evaluator",
    "cotdistill-server",
)

Overrides = Annotated[list[str] | None, typer.Argument(help="key.path=value overrides, applied after the file.")]


def _services() -> dict[str, str]:
    # Discovered through entry points so this package never imports a service module directly.
    return {ep.name: ep.value for ep in entry_points(group=SERVICE_GROUP)}


@app.command()
def serve(name: Annotated[str, typer.Argument(help="teacher, trainer, evaluator or server")]) -> None:
    """Start a service in the foreground; settings come from COTDISTILL_<SERVICE>_* variables."""
    found = {ep.name: ep for ep in entry_points(group=SERVICE_GROUP)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        console.print(f"[red]unknown service {name!r}[/]; installed: {known}")
        raise typer.Exit(2)
    found[name].load()()


@app.command("version")
def show_version() -> None:
    """Versions of the installed cotdistill distributions."""
    table = Table("distribution", "version")
    for dist in DISTRIBUTIONS:
        try:
            table.add_row(dist, version(dist))
        except PackageNotFoundError:
            table.add_row(dist, "[dim]not installed[/]")
    out.print(table)


@config_app.command("validate")
def config_validate(
    file: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    overrides: Overrides = None,
    show: Annotated[bool, typer.Option(help="Print the resolved config.")] = False,
    paths: Annotated[
        bool,
        typer.Option(
            help="Check that files and model directories exist on this machine (--no-paths when the services "
            "run elsewhere: names are still checked)."
        ),
    ] = True,
) -> None:
    """Validate a recipe: its keys and values, then the datasets, formats, models and files it names.

    Every problem is one line naming file:line and the key (with "did you mean" for near misses);
    the exit code is 2 when there is any.
    """
    config, where = load_located_config(RunConfig, file, overrides or [])
    problems = check_recipe(config, paths=paths)
    for problem in problems:
        line = f"{where(problem.key)}: {problem.dotted}: {problem.message}"
        console.print(f"[red]error:[/] {escape(line)}", highlight=False)
    if problems:
        raise typer.Exit(2)
    if show:
        out.print(dump_config(config), end="")
    console.print(f"[green]ok[/] {file}: run {config.name!r}, stages {', '.join(config.stages)}")


@app.command()
def run(config_file: Annotated[Path, typer.Argument(help="Recipe YAML file.")], overrides: Overrides = None) -> None:
    """Run the pipeline stages of a recipe, writing artifacts under OUTPUT_DIR/NAME."""
    config, where = load_located_config(RunConfig, config_file, overrides or [])
    # Names only: the services resolve files on their own machines, and say so when one is missing.
    problems = check_recipe(config, paths=False)
    if problems:
        first = problems[0]
        raise ConfigError(first.message, key=first.dotted, source=where(first.key))
    store = ArtifactStore(f"{config.output_dir.rstrip('/')}/{config.name}")
    store.write_text(dump_config(config), "config.yaml")
    console.print(f"run [bold]{config.name}[/] -> {store.root_uri}")
    for name in config.stages:
        stage = STAGES[name]
        if stage.run is None:
            console.print(f"[yellow]stage {name!r} ({stage.summary}) is not available yet: {stage.provider}[/]")
            raise typer.Exit(3)
        console.rule(f"{name}: {stage.summary}")
        stage.run(config, store, console)


def main() -> None:
    """Entry point: project errors become one clear line and exit code 2, never a traceback."""
    try:
        app()
    except CotdistillError as err:
        console.print(f"[red]error:[/] {escape(str(err))}")
        sys.exit(2)


if __name__ == "__main__":
    main()

"""What a recipe refers to: dataset, format and model names and files, checked before a run.

Validation of the recipe's shape (keys, types, ranges) is :mod:`cotdistill.common.config`;
this module checks that the names it uses exist, with "did you mean" for near misses:

* datasets (``sampling.dataset``, ``evaluation.datasets[i].name``, ...) are registry names
  (``cotdistill data list``) with a split they have, or, where the evaluator accepts one, a
  ``.json``/``.jsonl`` file;
* formats are teacher prompt formats (``sampling.prompt_format``) or student formats
  (``training.data.format``);
* models (``training.student.model``) are registry names or model directories;
* files (checkpoints, sample shards, tokenizers, the generic set) exist.

Files are checked on *this* machine, which is right when the services share its file system
(the embedded default). With services elsewhere (a cluster), ``paths=False`` checks names only.
A path inside the run's own directory is not checked: earlier stages of the run create it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cotdistill.common.config import KeyPath
from cotdistill.common.models import registry
from cotdistill.common.suggest import did_you_mean
from cotdistill.common.tasks import get_dataset_info, known_names, list_formats
from cotdistill.common.tasks.errors import UnknownDatasetError
from cotdistill.pipeline.run_config import DatasetRef, RunConfig

# Files the evaluator reads as a dataset instead of a registry name.
_DATASET_FILE_SUFFIXES = (".json", ".jsonl")


def known_models() -> tuple[str, ...]:
    """Model names a recipe may use instead of a directory (the models registry)."""
    return tuple(registry())


@dataclass(frozen=True)
class Problem:
    """One reference that does not resolve: the recipe key and what is wrong."""

    key: KeyPath
    message: str

    @property
    def dotted(self) -> str:
        out = ""
        for part in self.key:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


def check_recipe(config: RunConfig, *, paths: bool = True) -> list[Problem]:
    """Every reference of ``config`` that does not resolve, in recipe order (empty when all do)."""
    run_dir = None if "://" in config.output_dir else (Path(config.output_dir) / config.name).resolve()
    checker = _Checker(paths=paths, run_dir=run_dir)
    s, t, e = config.sampling, config.training, config.evaluation
    checker.dataset(("sampling",), s.dataset, s.split, files=False)
    checker.name(("sampling", "prompt_format"), s.prompt_format, [f.name for f in list_formats("teacher")], "format")
    checker.name(("training", "data", "format"), t.data.format, [f.name for f in list_formats("student")], "format")
    if t.student.model:
        checker.model(("training", "student", "model"), t.student.model)
    for section, name in (("student", "tokenizer"), ("data", "teacher_tokenizer")):
        if value := getattr(getattr(t, section), name):
            checker.path(("training", section, name), value, directory=True)
    for name in ("train_paths", "validation_paths"):
        for i, value in enumerate(getattr(t.data, name)):
            checker.path(("training", "data", name, i), value)
    for name in ("datasets", "selection_datasets"):
        refs: Sequence[DatasetRef] = getattr(e, name)
        for i, ref in enumerate(refs):
            checker.dataset(("evaluation", name, i), ref.name, ref.split, files=True)
    for i, value in enumerate(e.checkpoints):
        checker.model(("evaluation", "checkpoints", i), value)
    if e.generic_set:
        checker.path(("evaluation", "generic_set"), e.generic_set)
    return checker.problems


@dataclass
class _Checker:
    paths: bool
    run_dir: Path | None
    problems: list[Problem] = field(default_factory=list)

    def fail(self, key: KeyPath, message: str) -> None:
        self.problems.append(Problem(key, message))

    def name(self, key: KeyPath, value: str, known: list[str], what: str) -> None:
        if value not in known:
            hint = did_you_mean(value, known)
            self.fail(key, f"unknown {what} {value!r}" + (hint or f"; known: {', '.join(known)}"))

    def dataset(self, section: KeyPath, name: str, split: str, *, files: bool) -> None:
        if files and (name.endswith(_DATASET_FILE_SUFFIXES) or "/" in name):
            self.path((*section, "name"), name)
            return
        key = (*section, "dataset") if section == ("sampling",) else (*section, "name")
        try:
            info = get_dataset_info(name)
        except UnknownDatasetError:
            extra = ", or a .json/.jsonl file" if files else ""
            self.fail(
                key,
                f"unknown dataset {name!r}{did_you_mean(name, known_names())}; "
                f"give a name `cotdistill data list` shows{extra}",
            )
            return
        if split not in info.splits:
            self.fail(
                (*section, "split"),
                f"dataset {name!r} has no split {split!r}{did_you_mean(split, info.splits)}; "
                f"splits: {', '.join(info.splits)}",
            )

    def model(self, key: KeyPath, value: str) -> None:
        if value in known_models():
            return
        local = Path(value).expanduser()
        if "/" in value or value.startswith((".", "~")) or local.exists():
            if not self.paths or self._made_by_the_run(local):
                return
            if value.lower().endswith(".gguf"):  # a GGUF file converts into the models cache
                if not local.is_file():
                    self.fail(key, f"no such GGUF file on this machine: {value}")
            elif not (local / "config.json").is_file():
                self.fail(key, f"no model directory (config.json) at {value} on this machine")
            return
        self.fail(
            key,
            f"unknown model {value!r}{did_you_mean(value, known_models())}: give a registry name "
            f"({', '.join(known_models())}) or a model directory",
        )

    def path(self, key: KeyPath, value: str, *, directory: bool = False) -> None:
        if not self.paths or "://" in value:
            return
        local = Path(value).expanduser()
        if self._made_by_the_run(local):
            return
        if not local.exists():
            siblings = [p.name for p in local.parent.iterdir()] if local.parent.is_dir() else []
            self.fail(key, f"no such file or directory on this machine: {value}{did_you_mean(local.name, siblings)}")
        elif directory and not local.is_dir():
            self.fail(key, f"not a directory: {value}")

    def _made_by_the_run(self, path: Path) -> bool:
        return self.run_dir is not None and path.resolve().is_relative_to(self.run_dir)

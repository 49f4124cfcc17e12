"""Errors of the task layer: subclasses of the project's errors, so callers map them the same way."""

from __future__ import annotations

import os

from cotdistill.common.errors import ConfigError, InvalidArgument, NotFound
from cotdistill.common.suggest import did_you_mean


class UnknownDatasetError(NotFound, KeyError):
    """A dataset name that is not registered; the message lists the known names."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        hint = did_you_mean(name, known)
        NotFound.__init__(self, f"unknown dataset {name!r}{hint}; known datasets: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownSplitError(NotFound):
    """A split the dataset does not have."""

    def __init__(self, dataset: str, split: str, known: tuple[str, ...]) -> None:
        hint = did_you_mean(split, known)
        super().__init__(f"dataset {dataset!r} has no split {split!r}{hint}; splits: {', '.join(known)}")


class UnknownFormatError(InvalidArgument):
    """A prompt or completion format name that does not exist."""

    def __init__(self, name: str, known: list[str], field: str = "format") -> None:
        hint = did_you_mean(name, known)
        super().__init__(field, f"unknown format {name!r}{hint}; known formats: {', '.join(known)}")


class DataDirNotFound(NotFound):
    """The folder with the real datasets is missing."""

    def __init__(self, path: os.PathLike[str], how: str) -> None:
        super().__init__(
            f"dataset folder not found: {path} ({how}); set COTDISTILL_DATA_DIR to the folder that holds "
            "gsm8k/, svamp/, ... (the shared/data folder beside the checkout)"
        )


class MalformedDataError(ConfigError):
    """A data file that does not parse or lacks a field: names file:line (or record index) and field."""

    def __init__(self, path: str | os.PathLike[str], where: int | str | None, field: str | None, message: str) -> None:
        self.path = str(path)
        self.where = where
        if where is None:
            source = self.path
        elif isinstance(where, int):
            source = f"{self.path}:{where}"
        else:
            source = f"{self.path}[{where}]"
        super().__init__(message, key=field, source=source)

"""Where the real datasets live: ``COTDISTILL_DATA_DIR`` or ``shared/data`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

from cotdistill.common.tasks.errors import DataDirNotFound

ENV_VAR = "COTDISTILL_DATA_DIR"


def default_data_dir() -> Path:
    """``<repo>/../shared/data``, found from this file (``<repo>/shared/src/cotdistill/common/tasks``)."""
    repo = Path(__file__).resolve().parents[5]
    return repo.parent / "shared" / "data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The dataset folder to read: the argument, else ``$COTDISTILL_DATA_DIR``, else the default.

    Raises DataDirNotFound (naming COTDISTILL_DATA_DIR) when the folder does not exist.
    """
    if data_dir is not None:
        path, how = Path(data_dir), "data_dir argument"
    elif os.environ.get(ENV_VAR):
        path, how = Path(os.environ[ENV_VAR]), f"from ${ENV_VAR}"
    else:
        path, how = default_data_dir(), "default location beside the checkout"
    if not path.is_dir():
        raise DataDirNotFound(path, how)
    return path.resolve()

"""Split index files: Fine-tune-CoT's ``<name>__<split>.json`` and Fu et al.'s ``validation_index.npy``."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cotdistill.common.tasks.errors import MalformedDataError
from cotdistill.common.tasks.loaders.readers import read_json


def ftcot_split(path: str | os.PathLike[str], split: str, size: int) -> list[int]:
    """Indices of ``split`` ("train"/"test") in a Fine-tune-CoT split file, checked against ``size``."""
    doc = read_json(path)
    if not isinstance(doc, dict) or split not in doc:
        raise MalformedDataError(path, 1, split, "missing split in split file")
    indices = doc[split]
    if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise MalformedDataError(path, 1, split, "expected a list of integer indices")
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise MalformedDataError(path, 1, split, f"index {bad[0]} out of range for {size} records")
    return list(indices)


def npy_indices(path: str | os.PathLike[str], size: int) -> list[int]:
    """Indices stored as a 1-D integer ``.npy`` array (Fu et al.'s GSM8K dev), checked against ``size``."""
    return list(_npy(str(Path(path)), size))


@functools.lru_cache(maxsize=8)
def _npy(path: str, size: int) -> tuple[int, ...]:
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MalformedDataError(path, None, None, "file not found") from None
    except ValueError as err:
        raise MalformedDataError(path, None, None, f"not a numpy array file: {err}") from None
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise MalformedDataError(path, None, None, f"expected a 1-D integer array, got {arr.dtype} {arr.shape}")
    values = tuple(int(v) for v in arr)
    bad = [v for v in values if not 0 <= v < size]
    if bad:
        raise MalformedDataError(path, None, None, f"index {bad[0]} out of range for {size} records")
    return values

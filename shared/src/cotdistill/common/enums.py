"""Proto enums as the short names recipes, logs and Python code use, derived from the descriptors.

``DIVERGENCE_FORWARD_KL`` of ``cotdistill.v1.Divergence`` is ``"forward_kl"``: the value's name
without the enum's prefix (``DIVERGENCE_``, read off its ``*_UNSPECIFIED`` zero value, which buf
lint requires), lower-cased. A new proto value gets its name here without a table to update;
the ``*_UNSPECIFIED`` zero means "the field's default", which only the field knows, so it has no
short name and callers pass the default they document.

    >>> from cotdistill.v1 import trainer_pb2
    >>> names(trainer_pb2.Divergence).name(trainer_pb2.DIVERGENCE_JSD)
    'jsd'
    >>> names(trainer_pb2.Divergence).value("reverse_kl") == trainer_pb2.DIVERGENCE_REVERSE_KL
    True
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

_ZERO_SUFFIX = "UNSPECIFIED"


@dataclass(frozen=True)
class EnumNames:
    """Both directions between one proto enum's numbers and its short names (UNSPECIFIED left out)."""

    full_name: str
    by_value: Mapping[int, str]
    by_name: Mapping[str, int]

    def name(self, value: int, default: str | None = None) -> str:
        """The short name of ``value``; ``default`` for UNSPECIFIED and for numbers this build does
        not know (a newer peer's), else ValueError."""
        short = self.by_value.get(value)
        if short is not None:
            return short
        if default is not None:
            return default
        raise ValueError(f"{self.full_name}: no value {value}; known: {sorted(self.by_name)}")

    def value(self, name: str) -> Any:
        """The number of short ``name``; ValueError naming the known names otherwise.

        Typed ``Any``: the number goes into fields typed with each enum's own ``ValueType``.
        """
        try:
            return self.by_name[name]
        except KeyError:
            raise ValueError(f"{self.full_name}: unknown name {name!r}; known: {sorted(self.by_name)}") from None

    @property
    def names(self) -> tuple[str, ...]:
        """Short names in proto order."""
        return tuple(self.by_name)


def prefix(enum: EnumDescriptor) -> str:
    """``DIVERGENCE_`` for ``Divergence``: its zero value's name without ``UNSPECIFIED``."""
    zero = enum.values_by_number[0].name
    if not zero.endswith(_ZERO_SUFFIX):
        raise ValueError(f"{enum.full_name}: zero value {zero} does not end in {_ZERO_SUFFIX}")
    return zero[: -len(_ZERO_SUFFIX)]


def names(enum: EnumTypeWrapper | EnumDescriptor, *, drop_suffix: str = "") -> EnumNames:
    """The short names of ``enum`` (a ``*_pb2`` enum class or its descriptor).

    ``drop_suffix`` also strips a common ending, where the short name the project uses is
    shorter than the proto's (``SELECTION_SIGNAL_IN_DISTRIBUTION_ACCURACY`` -> ``in_distribution``
    with ``drop_suffix="_ACCURACY"``).
    """
    descriptor = enum.DESCRIPTOR if isinstance(enum, EnumTypeWrapper) else enum
    return _names(descriptor, drop_suffix)


@functools.cache
def _names(descriptor: EnumDescriptor, drop_suffix: str) -> EnumNames:
    start = prefix(descriptor)
    by_value: dict[int, str] = {}
    for v in descriptor.values:
        if v.number == 0:
            continue
        by_value[v.number] = v.name.removeprefix(start).removesuffix(drop_suffix).lower()
    by_name = {name: number for number, name in by_value.items()}
    return EnumNames(descriptor.full_name, MappingProxyType(by_value), MappingProxyType(by_name))

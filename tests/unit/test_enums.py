"""cotdistill.common.enums: short names derived from the proto descriptors, both directions."""

from __future__ import annotations

import pytest

from cotdistill.common import enums
from cotdistill.v1 import common_pb2, evaluator_pb2, teacher_pb2, trainer_pb2


@pytest.mark.parametrize(
    "enum",
    [
        trainer_pb2.RunState,
        trainer_pb2.StudentKind,
        trainer_pb2.Divergence,
        trainer_pb2.TopKMass,
        trainer_pb2.LrSchedule,
        trainer_pb2.Precision,
        trainer_pb2.ParallelStrategy,
        trainer_pb2.OnPolicySupport,
        evaluator_pb2.DatasetGroup,
        common_pb2.FinishReason,
        common_pb2.LogprobMode,
        teacher_pb2.PromptTemplate,
    ],
)
def test_every_value_but_unspecified_round_trips(enum: object) -> None:
    names = enums.names(enum)  # type: ignore[arg-type]
    numbers = [v.number for v in names_of(enum) if v.number]
    assert sorted(names.by_value) == numbers
    for number in numbers:
        assert names.value(names.name(number)) == number
    assert all(n == n.lower() and not n.endswith("unspecified") for n in names.names)


def names_of(enum: object) -> list:  # type: ignore[type-arg]
    return list(enum.DESCRIPTOR.values)  # type: ignore[attr-defined]


def test_short_names_are_the_proto_names_without_the_prefix() -> None:
    assert enums.names(trainer_pb2.Divergence).name(trainer_pb2.DIVERGENCE_FORWARD_KL) == "forward_kl"
    assert enums.names(trainer_pb2.TopKMass).value("tail_bucket") == trainer_pb2.TOP_K_MASS_TAIL_BUCKET
    assert enums.names(common_pb2.FinishReason).names == ("stop", "length", "abort")
    signals = enums.names(evaluator_pb2.SelectionSignal, drop_suffix="_ACCURACY")
    assert signals.value("in_distribution") == evaluator_pb2.SELECTION_SIGNAL_IN_DISTRIBUTION_ACCURACY
    assert signals.name(evaluator_pb2.SELECTION_SIGNAL_VALIDATION_LOSS) == "validation_loss"


def test_unspecified_and_unknown_numbers_take_the_callers_default_or_fail() -> None:
    divergence = enums.names(trainer_pb2.Divergence)
    assert divergence.name(trainer_pb2.DIVERGENCE_UNSPECIFIED, "jsd") == "jsd"
    assert divergence.name(99, "forward_kl") == "forward_kl"  # a newer peer's value
    with pytest.raises(ValueError, match="cotdistill.v1.Divergence: no value 99"):
        divergence.name(99)
    with pytest.raises(ValueError, match="unknown name 'kl'; known: \\['forward_kl', 'jsd', 'reverse_kl'\\]"):
        divergence.value("kl")

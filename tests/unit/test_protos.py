"""The wire contracts: every field documented, packed columns, and the generated code current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cotdistill.v1 import common_pb2, evaluator_pb2, teacher_pb2, trainer_pb2

PROTOS = sorted((Path(__file__).resolve().parents[2] / "protos" / "cotdistill" / "v1").glob("*.proto"))
DECLARATION = re.compile(
    r"^\s*(message|enum|service|rpc|oneof)\b|^\s*[A-Z][A-Z0-9_]* = \d+;|^\s*(optional |repeated )?[\w.<>, ]+ \w+ = \d+;"
)


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_every_declaration_has_a_comment(proto: Path) -> None:
    lines = proto.read_text().splitlines()
    missing = [
        f"{proto.name}:{i + 1}: {line.strip()}"
        for i, line in enumerate(lines)
        if DECLARATION.match(line) and not (i > 0 and lines[i - 1].strip().startswith("//"))
    ]
    assert not missing, "undocumented declarations:\n" + "\n".join(missing)


def test_topk_columns_are_packed_flat_arrays() -> None:
    t, k = 64, 20
    lp = common_pb2.TokenLogprobs(
        token_ids=list(range(t)),
        token_logprobs=[-0.5] * t,
        k=k,
        top_ids=list(range(t * k)),
        top_logprobs=[-1.0] * (t * k),
    )
    data = lp.SerializeToString()
    # Packed: ~4-5 bytes per int and 4 per float, no per-entry tags.
    assert len(data) < t * (5 + 4) + t * k * (3 + 4) + 64
    again = common_pb2.TokenLogprobs.FromString(data)
    assert list(again.top_ids[k : 2 * k]) == list(range(k, 2 * k))
    for name in ("token_ids", "token_logprobs", "top_ids", "top_logprobs"):
        field = common_pb2.TokenLogprobs.DESCRIPTOR.fields_by_name[name]
        assert field.is_packed, f"{name} must be packed"


def test_optional_fields_distinguish_unset_from_zero() -> None:
    params = teacher_pb2.SamplingParams()
    assert not params.HasField("seed")
    params.seed = 0
    assert params.HasField("seed")


def test_services_have_the_designed_rpcs() -> None:
    def rpcs(module: object, name: str) -> set[str]:
        return set(module.DESCRIPTOR.services_by_name[name].methods_by_name)  # type: ignore[attr-defined]

    assert rpcs(teacher_pb2, "TeacherService") == {"Sample", "Score", "Info"}
    assert rpcs(trainer_pb2, "TrainerService") == {"StartRun", "WatchRun", "GetRun", "ListRuns", "CancelRun"}
    assert rpcs(evaluator_pb2, "EvaluatorService") == {"Evaluate", "Select"}
    sample = teacher_pb2.DESCRIPTOR.services_by_name["TeacherService"].methods_by_name["Sample"]
    assert sample.server_streaming and not sample.client_streaming


def test_generated_code_matches_protos(repo_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cotdistill.common.protogen", "protos", "shared/src/cotdistill/v1", "--check"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr

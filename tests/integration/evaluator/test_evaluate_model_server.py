"""Evaluate through the project's own model server (OpenAI-compatible /v1/completions, API key):
greedy predictions must equal those of the same checkpoint evaluated directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotdistill.v1 import common_pb2, evaluator_pb2
from tests.integration.server.conftest import API_KEY, MODEL, server_settings, start_server

from .conftest import EvaluatorUnderTest


def completions(path: str) -> list[str]:
    return [json.loads(x)["completion"] for x in Path(path).read_text().splitlines()]


async def test_model_server_and_checkpoint_agree(
    evaluator: EvaluatorUnderTest, tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVAL_TEST_API_KEY", API_KEY)
    server = start_server(server_settings(tiny_models["student"]))
    try:
        endpoint = common_pb2.OpenAIEndpoint(
            base_url=f"{server.base_url}/v1", model=MODEL, api_key_env="EVAL_TEST_API_KEY"
        )
        results = {}
        for label, model in (
            ("server", common_pb2.ModelRef(openai=endpoint)),
            ("checkpoint", common_pb2.ModelRef(checkpoint_path=str(tiny_models["student"]))),
        ):
            request = evaluator_pb2.EvaluateRequest(
                model=model,
                datasets=[evaluator_pb2.EvalDataset(name="synthetic_coin_flip", limit=6)],
                formats=["ft_cot"],
                generation=evaluator_pb2.EvalGeneration(max_tokens=10, batch_size=6),
                output_dir=str(tmp_path / "run"),
                label=label,
            )
            async for reply in evaluator.stub.Evaluate(request, timeout=120):
                if reply.HasField("result"):
                    results[label] = reply.result.results[0]
        assert results["server"].total == 6
        assert any(completions(results["server"].predictions_path))  # real text, not empty agreement
        assert completions(results["server"].predictions_path) == completions(results["checkpoint"].predictions_path)
        assert results["server"].correct == results["checkpoint"].correct
    finally:
        server.stop()

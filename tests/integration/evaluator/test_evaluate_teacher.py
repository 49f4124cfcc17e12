"""Evaluate through the teacher service (gRPC Sample, transformers backend): with greedy decoding
the teacher path must predict exactly what evaluating the same checkpoint directly predicts."""

from __future__ import annotations

import json
from pathlib import Path

from cotdistill.v1 import common_pb2, evaluator_pb2

from .conftest import EvaluatorUnderTest


def read_lines(path: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


async def test_teacher_service_and_checkpoint_agree(
    evaluator: EvaluatorUnderTest, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    from cotdistill.teacher.server import build_server
    from cotdistill.teacher.settings import TeacherSettings

    settings = TeacherSettings(
        port=0, metrics_port=0, model=str(tiny_models["teacher"]), backend="transformers", num_threads=1
    )
    teacher = await build_server(settings)
    await teacher.load()
    try:

        def request(model: common_pb2.ModelRef, label: str) -> evaluator_pb2.EvaluateRequest:
            return evaluator_pb2.EvaluateRequest(
                model=model,
                datasets=[evaluator_pb2.EvalDataset(name="synthetic_arithmetic", limit=5)],
                formats=["zero_shot_cot"],
                generation=evaluator_pb2.EvalGeneration(max_tokens=12, batch_size=5),
                output_dir=str(tmp_path / "run"),
                label=label,
                tags={"role": "teacher"},
            )

        results = {}
        for label, model in (
            ("service", common_pb2.ModelRef(teacher_address=f"127.0.0.1:{teacher.service.port}")),
            ("checkpoint", common_pb2.ModelRef(checkpoint_path=str(tiny_models["teacher"]))),
        ):
            async for reply in evaluator.stub.Evaluate(request(model, label), timeout=120):
                if reply.HasField("result"):
                    results[label] = reply.result
        via_service = read_lines(results["service"].results[0].predictions_path)
        direct = read_lines(results["checkpoint"].results[0].predictions_path)
        assert [r["completion"] for r in via_service] == [r["completion"] for r in direct]
        assert results["service"].results[0].correct == results["checkpoint"].results[0].correct
        assert results["service"].results[0].total == 5
        assert results["service"].model_hash != results["checkpoint"].model_hash
    finally:
        await teacher.stop(0)

"""Evaluate against a real loopback OpenAI-compatible server that returns planted answers.

The planted answers fix what the accuracy must be, so these tests check the arithmetic (counts,
Wilson intervals, group means, majority votes), the predictions file, the cache and Select.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from cotdistill.common.tasks import load_dataset, student_prompt
from cotdistill.evaluator.stats import wilson_interval
from cotdistill.v1 import common_pb2, evaluator_pb2

from .conftest import EvaluatorUnderTest, PlantedEndpoint

ID, OOD = "synthetic_arithmetic", "synthetic_arithmetic_4step"


def read(path: str | Path) -> str:
    return Path(path).read_text()


def plant(endpoint: PlantedEndpoint, model: str, dataset: str, n: int, correct: set[int]) -> None:
    """ft_cot completions for the first ``n`` test questions: right for indices in ``correct``."""
    table = endpoint.completions.setdefault(model, {})
    for i, ex in enumerate(load_dataset(dataset, "test", limit=n)):
        answer = ex.answer if i in correct else str(int(float(ex.answer)) + 1)
        # Text after END must be ignored, as a server without stop support would send it.
        table[student_prompt("ft_cot", ex.question)] = [f" Some steps. --> {answer} END Q: junk --> 0"]


def request(endpoint: PlantedEndpoint, model: str, out: Path, **gen: object) -> evaluator_pb2.EvaluateRequest:
    return evaluator_pb2.EvaluateRequest(
        model=common_pb2.ModelRef(openai=common_pb2.OpenAIEndpoint(base_url=endpoint.base_url, model=model)),
        datasets=[
            evaluator_pb2.EvalDataset(
                name=ID, split="test", limit=12, group=evaluator_pb2.DATASET_GROUP_IN_DISTRIBUTION
            ),
            evaluator_pb2.EvalDataset(name=OOD, limit=8, group=evaluator_pb2.DATASET_GROUP_OUT_OF_DISTRIBUTION),
        ],
        formats=["ft_cot"],
        generation=evaluator_pb2.EvalGeneration(batch_size=5, **gen),  # type: ignore[arg-type]
        output_dir=str(out),
        label=model,
    )


async def evaluate(
    ev: EvaluatorUnderTest, req: evaluator_pb2.EvaluateRequest
) -> tuple[list, evaluator_pb2.EvaluationResult]:
    progress, results = [], []
    async for reply in ev.stub.Evaluate(req, timeout=60):
        (progress if reply.HasField("progress") else results).append(reply)
    assert len(results) == 1 and results[-1] is not progress
    return [p.progress for p in progress], results[0].result


async def test_accuracy_counts_intervals_and_predictions(
    evaluator: EvaluatorUnderTest, openai_endpoint: PlantedEndpoint, tmp_path: Path
) -> None:
    plant(openai_endpoint, "m", ID, 12, {i for i in range(12) if i % 3})  # 8 of 12
    plant(openai_endpoint, "m", OOD, 8, {0, 1})  # 2 of 8
    progress, result = await evaluate(evaluator, request(openai_endpoint, "m", tmp_path / "run"))

    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert progress[-1].done == progress[-1].total == 20 and progress[-1].unit == "examples"
    by_name = {r.dataset: r for r in result.results}
    assert (by_name[ID].correct, by_name[ID].total) == (8, 12)
    assert (by_name[OOD].correct, by_name[OOD].total) == (2, 8)
    assert by_name[ID].accuracy == pytest.approx(8 / 12)
    assert (by_name[ID].ci_low, by_name[ID].ci_high) == pytest.approx(wilson_interval(8, 12))
    assert by_name[OOD].group == evaluator_pb2.DATASET_GROUP_OUT_OF_DISTRIBUTION
    assert dict(result.group_accuracy) == pytest.approx({"in_distribution": 8 / 12, "out_of_distribution": 0.25})
    assert not any(r.cached for r in result.results)

    lines = [json.loads(x) for x in read(by_name[ID].predictions_path).splitlines()]
    assert len(lines) == 12 and sum(x["correct"] for x in lines) == 8
    first = lines[1]
    assert first["rationale"] == "Some steps." and first["answer"] == first["gold"] and first["correct"]
    assert "junk" not in first["completion"]  # cut at the stop string
    assert openai_endpoint.bodies[0]["stop"] == ["END"] and openai_endpoint.bodies[0]["temperature"] == 0

    saved = json.loads(read(result.result_path))
    assert saved["schema"] == "cotdistill.eval/v1" and saved["label"] == "m"
    assert Path(result.result_path).parent == tmp_path / "run" / "eval"


async def test_repeating_an_evaluation_comes_from_the_cache(
    evaluator: EvaluatorUnderTest, openai_endpoint: PlantedEndpoint, tmp_path: Path
) -> None:
    plant(openai_endpoint, "m", ID, 12, {0, 1, 2})
    plant(openai_endpoint, "m", OOD, 8, set())
    _, first = await evaluate(evaluator, request(openai_endpoint, "m", tmp_path / "a"))
    calls = openai_endpoint.calls
    _, again = await evaluate(evaluator, request(openai_endpoint, "m", tmp_path / "b"))
    assert openai_endpoint.calls == calls  # nothing generated
    assert all(r.cached for r in again.results)
    assert [(r.correct, r.total) for r in again.results] == [(r.correct, r.total) for r in first.results]
    assert read(again.results[0].predictions_path) == read(first.results[0].predictions_path)
    # Other generation parameters are another cache entry; no_cache forces a fresh run.
    _, longer = await evaluate(evaluator, request(openai_endpoint, "m", tmp_path / "c", max_tokens=64))
    assert not any(r.cached for r in longer.results)
    forced = request(openai_endpoint, "m", tmp_path / "d")
    forced.no_cache = True
    _, fresh = await evaluate(evaluator, forced)
    assert not any(r.cached for r in fresh.results) and openai_endpoint.calls > calls


async def test_self_consistency_votes_over_samples(
    evaluator: EvaluatorUnderTest, openai_endpoint: PlantedEndpoint, tmp_path: Path
) -> None:
    table = openai_endpoint.completions.setdefault("sc", {})
    for dataset, n in ((ID, 12), (OOD, 8)):
        for i, ex in enumerate(load_dataset(dataset, "test", limit=n)):
            right, wrong = f" r --> {ex.answer} END", f" r --> {int(float(ex.answer)) + 1} END"
            # Even questions: 2 of 3 samples right (majority right); odd: 1 of 3 (majority wrong).
            table[student_prompt("ft_cot", ex.question)] = (
                [right, wrong, right] if i % 2 == 0 else [wrong, right, wrong]
            )
    _, result = await evaluate(
        evaluator, request(openai_endpoint, "sc", tmp_path / "run", temperature=0.7, num_samples=3, seed=1)
    )
    assert [(r.correct, r.total) for r in result.results] == [(6, 12), (4, 8)]
    assert openai_endpoint.bodies[-1]["n"] == 3 and openai_endpoint.bodies[-1]["seed"] == 1
    record = json.loads(read(result.results[0].predictions_path).splitlines()[1])
    assert len(record["samples"]) == 3 and not record["correct"]


async def test_select_picks_by_signal_and_writes_the_table(
    evaluator: EvaluatorUnderTest, openai_endpoint: PlantedEndpoint, tmp_path: Path
) -> None:
    plant(openai_endpoint, "early", ID, 12, set(range(6)))  # ID 0.5
    plant(openai_endpoint, "early", OOD, 8, set(range(6)))  # OOD 0.75
    plant(openai_endpoint, "late", ID, 12, set(range(10)))  # ID 0.833
    plant(openai_endpoint, "late", OOD, 8, {0})  # OOD 0.125

    def candidate(model: str, step: int, loss: float) -> evaluator_pb2.Candidate:
        ref = common_pb2.ModelRef(openai=common_pb2.OpenAIEndpoint(base_url=openai_endpoint.base_url, model=model))
        return evaluator_pb2.Candidate(model=ref, label=model, step=step, validation_loss=loss)

    base = request(openai_endpoint, "early", tmp_path / "run")
    expected = {
        evaluator_pb2.SELECTION_SIGNAL_IN_DISTRIBUTION_ACCURACY: "late",
        evaluator_pb2.SELECTION_SIGNAL_OUT_OF_DISTRIBUTION_ACCURACY: "early",
        evaluator_pb2.SELECTION_SIGNAL_WEIGHTED: "early",  # 0.625 vs 0.479
        evaluator_pb2.SELECTION_SIGNAL_VALIDATION_LOSS: "late",
    }
    for signal, want in expected.items():
        reply = await evaluator.stub.Select(
            evaluator_pb2.SelectRequest(
                candidates=[candidate("early", 100, 0.9), candidate("late", 200, 0.5)],
                datasets=base.datasets,
                format="ft_cot",
                signal=signal,
                id_weight=0.5,
                output_dir=str(tmp_path / "run"),
            ),
            timeout=60,
        )
        assert reply.chosen.label == want, evaluator_pb2.SelectionSignal.Name(signal)
    assert reply.table[0].in_distribution_accuracy == pytest.approx(0.5)
    assert reply.table[1].out_of_distribution_accuracy == pytest.approx(0.125)
    assert reply.table[1].validation_loss == pytest.approx(0.5)
    saved = json.loads(read(reply.table_path))
    assert saved["chosen"]["label"] == "late" and saved["signal"] == "validation_loss"


async def test_bad_requests_name_the_field_and_only_unreachable_models_are_unavailable(
    evaluator: EvaluatorUnderTest, openai_endpoint: PlantedEndpoint, tmp_path: Path
) -> None:
    async def code_of(req: evaluator_pb2.EvaluateRequest) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await evaluate(evaluator, req)
        return err.value.code(), err.value.details() or ""

    bad = request(openai_endpoint, "m", tmp_path)
    bad.datasets[1].name = "no_such_dataset"
    code, details = await code_of(bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "datasets[1].name" in details and "no_such_dataset" in details

    bad = request(openai_endpoint, "m", tmp_path)
    bad.formats.append("nope_format")
    code, details = await code_of(bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "formats[1]" in details and "nope_format" in details

    bad = request(openai_endpoint, "m", tmp_path, num_samples=4)
    code, details = await code_of(bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "generation.num_samples" in details

    from tests.conftest import free_port

    gone = request(openai_endpoint, "m", tmp_path)
    gone.model.openai.base_url = f"http://127.0.0.1:{free_port()}/v1"
    code, details = await code_of(gone)
    assert code == grpc.StatusCode.UNAVAILABLE and "cannot reach" in details

    missing = request(openai_endpoint, "m", tmp_path)
    missing.model.checkpoint_path = str(tmp_path / "no-checkpoint")
    code, details = await code_of(missing)
    assert code == grpc.StatusCode.NOT_FOUND and details.startswith("model.checkpoint_path: no such directory")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await evaluator.stub.Select(
            evaluator_pb2.SelectRequest(
                candidates=[evaluator_pb2.Candidate(model=missing.model, label="x")],
                signal=evaluator_pb2.SELECTION_SIGNAL_VALIDATION_LOSS,
            ),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "candidates[0].validation_loss" in (err.value.details() or "")

    metrics = evaluator.service.registry  # the missing checkpoint is refused before an evaluation starts
    assert metrics.get_sample_value("cotdistill_evaluator_evaluations_total", {"state": "failed"}) == 1


async def test_paths_outside_the_roots_are_denied_and_bad_model_directories_are_typed(
    evaluator: EvaluatorUnderTest, openai_endpoint: PlantedEndpoint, tmp_path: Path
) -> None:
    """Issue 16 (3, 4): a request reaches no file outside the evaluator's roots (here the test's
    temporary folder, its artifacts, models cache and datasets), and a bad model directory is
    the caller's problem (INVALID_ARGUMENT / FAILED_PRECONDITION), never UNAVAILABLE."""

    async def status(req: evaluator_pb2.EvaluateRequest) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await evaluate(evaluator, req)
        return err.value.code(), err.value.details() or ""

    def with_checkpoint(path: str | Path) -> evaluator_pb2.EvaluateRequest:
        req = request(openai_endpoint, "m", tmp_path)
        req.model.checkpoint_path = str(path)
        return req

    denied = grpc.StatusCode.PERMISSION_DENIED
    for outside in ("/etc", "/proc/self", str(tmp_path / ".." / ".." / ".."), "relative/../../../../etc"):
        code, details = await status(with_checkpoint(outside))
        assert code == denied and details.startswith("model.checkpoint_path: "), (outside, details)
        assert "COTDISTILL_EVALUATOR_PATH_ROOTS" in details
    link = tmp_path / "escape"
    link.symlink_to("/etc")  # a link inside a root does not lead out of it
    assert (await status(with_checkpoint(link)))[0] == denied

    passwd = request(openai_endpoint, "m", tmp_path)
    passwd.datasets[1].name = "/etc/passwd"
    code, details = await status(passwd)
    assert code == denied and details.startswith("datasets[1].name: /etc/passwd is outside")

    elsewhere = request(openai_endpoint, "m", tmp_path)
    elsewhere.output_dir = "/var/tmp/cotdistill-evil"
    code, details = await status(elsewhere)
    assert code == denied and details.startswith("output_dir: ")

    code, details = await status(with_checkpoint(tmp_path))  # a folder, but no config.json
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a model directory (no config.json)" in details
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    code, details = await status(with_checkpoint(broken))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and details.startswith("model.checkpoint_path: cannot load")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await evaluator.stub.Select(
            evaluator_pb2.SelectRequest(
                candidates=[
                    evaluator_pb2.Candidate(model=request(openai_endpoint, "m", tmp_path).model, validation_loss=1),
                    evaluator_pb2.Candidate(model=common_pb2.ModelRef(checkpoint_path="/etc"), validation_loss=2),
                ],
                signal=evaluator_pb2.SELECTION_SIGNAL_VALIDATION_LOSS,
            ),
            timeout=10,
        )
    assert err.value.code() == denied and (err.value.details() or "").startswith("candidates[1].model.checkpoint_path")


async def test_a_cancelled_evaluation_is_counted_and_caches_nothing_partial(
    evaluator: EvaluatorUnderTest, openai_endpoint: PlantedEndpoint, tmp_path: Path
) -> None:
    import asyncio

    plant(openai_endpoint, "slow", ID, 12, set())
    plant(openai_endpoint, "slow", OOD, 8, set())
    req = request(openai_endpoint, "slow", tmp_path / "run")
    req.generation.batch_size = 1
    call = evaluator.stub.Evaluate(req, timeout=60)
    async for reply in call:
        assert reply.HasField("progress")
        if reply.progress.done >= 2:
            call.cancel()
            break
    registry = evaluator.service.registry
    for _ in range(100):
        if registry.get_sample_value("cotdistill_evaluator_evaluations_total", {"state": "cancelled"}) == 1:
            break
        await asyncio.sleep(0.05)
    assert registry.get_sample_value("cotdistill_evaluator_evaluations_total", {"state": "cancelled"}) == 1
    assert registry.get_sample_value("cotdistill_evaluator_evaluations_running") == 0
    # The interrupted (dataset, format) left no cache entry: a new run generates it.
    _, result = await evaluate(evaluator, request(openai_endpoint, "slow", tmp_path / "again"))
    assert not any(r.cached for r in result.results)

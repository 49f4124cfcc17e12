"""Evaluate a tiny transformers checkpoint: batched, left-padded generation gives the same answers
as one-prompt-at-a-time generation, and the accuracy on planted gold answers is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotdistill.common.tasks import extract_answer, load_dataset, student_prompt
from cotdistill.v1 import common_pb2, evaluator_pb2

from .conftest import EvaluatorUnderTest

QUESTIONS = 6
MAX_TOKENS = 8


def reference_answers(checkpoint: Path, prompts: list[str]) -> list[str | None]:
    """Greedy completions one prompt at a time (no padding), read back as answer_only answers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    out = []
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt")
        gen = model.generate(**ids, max_new_tokens=MAX_TOKENS, do_sample=False, pad_token_id=tok.eos_token_id)
        text = tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).split("END")[0]
        out.append(extract_answer(text.strip(), "text", after_trigger=True))
    return out


def read(path: str) -> str:
    return Path(path).read_text()


@pytest.fixture
def planted_file(tiny_models: dict[str, Path], tmp_path: Path) -> tuple[Path, int]:
    """A custom JSONL dataset whose gold answers are the model's own answers for 4 of 6 questions."""
    questions = [e.question for e in load_dataset("synthetic_arithmetic", "test", limit=QUESTIONS)]
    answers = reference_answers(tiny_models["student"], [student_prompt("answer_only", q) for q in questions])
    assert all(answers), "the random model produced an empty answer; pick other questions"
    wrong = {1, 4}
    path = tmp_path / "planted.jsonl"
    with path.open("w") as handle:
        for i, (q, a) in enumerate(zip(questions, answers, strict=True)):
            gold = "never-generated" if i in wrong else a
            handle.write(json.dumps({"id": f"q{i}", "question": q, "answer": gold, "answer_type": "text"}) + "\n")
    return path, QUESTIONS - len(wrong)


async def test_tiny_checkpoint_accuracy_on_planted_answers(
    evaluator: EvaluatorUnderTest, tiny_models: dict[str, Path], planted_file: tuple[Path, int], tmp_path: Path
) -> None:
    path, expected = planted_file
    request = evaluator_pb2.EvaluateRequest(
        model=common_pb2.ModelRef(checkpoint_path=str(tiny_models["student"])),
        datasets=[evaluator_pb2.EvalDataset(name=str(path), group=evaluator_pb2.DATASET_GROUP_GENERIC)],
        formats=["answer_only"],
        # 6 questions in batches of 4: the second batch pads differently from the first.
        generation=evaluator_pb2.EvalGeneration(max_tokens=MAX_TOKENS, batch_size=4),
        output_dir=str(tmp_path / "run"),
        label="tiny student",
        step=7,
        tags={"role": "student"},
    )
    result = None
    async for reply in evaluator.stub.Evaluate(request, timeout=120):
        if reply.HasField("result"):
            result = reply.result
    assert result is not None
    (entry,) = result.results
    assert (entry.correct, entry.total) == (expected, QUESTIONS)
    assert entry.dataset == "planted" and entry.group == evaluator_pb2.DATASET_GROUP_GENERIC
    assert dict(result.group_accuracy) == pytest.approx({"generic": expected / QUESTIONS})
    assert result.step == 7 and result.num_parameters > 10_000 and len(result.model_hash) == 64
    records = [json.loads(x) for x in read(entry.predictions_path).splitlines()]
    assert [r["correct"] for r in records] == [i not in {1, 4} for i in range(QUESTIONS)]
    examples = evaluator.service.registry.get_sample_value(
        "cotdistill_evaluator_examples_total", {"backend": "checkpoint", "cached": "false"}
    )
    assert examples == QUESTIONS


async def test_encoder_decoder_checkpoint_with_self_consistency(
    evaluator: EvaluatorUnderTest, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    request = evaluator_pb2.EvaluateRequest(
        model=common_pb2.ModelRef(checkpoint_path=str(tiny_models["t5"])),
        datasets=[evaluator_pb2.EvalDataset(name="synthetic_coin_flip", limit=3)],
        formats=["ft_cot_t5"],
        generation=evaluator_pb2.EvalGeneration(max_tokens=6, temperature=0.8, num_samples=3, seed=5),
        output_dir=str(tmp_path / "run"),
    )
    result = None
    async for reply in evaluator.stub.Evaluate(request, timeout=120):
        if reply.HasField("result"):
            result = reply.result
    assert result is not None and result.results[0].total == 3
    records = [json.loads(x) for x in read(result.results[0].predictions_path).splitlines()]
    assert all(len(r["samples"]) == 3 for r in records)
    assert any(s["completion"] for r in records for s in r["samples"])

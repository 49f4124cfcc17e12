"""On-policy micro-batches on a tiny student: prompts, generation, Score queries, aligned targets,
the student's own support, determinism per step; and the recipe's on-policy steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cotdistill.common.alignment import Aligner
from cotdistill.trainer.data import IGNORE, Sample
from cotdistill.trainer.on_policy import is_on_policy_step
from cotdistill.trainer.rollouts import PolicyPrompt, Rollouts, policy_prompts
from tests.unit.trainer import synthetic
from tests.unit.trainer.fake_scorer import FakeScorer


def samples(n: int = 12) -> list[Sample]:
    out = []
    for w in synthetic.words(n, 5):
        prompt = f"Q: {synthetic.question(w)}\nA: Let's think step by step."
        for _ in range(2):  # D = 2 samples of each question
            out.append(Sample(synthetic.question(w), synthetic.rationale(w), w[-1], teacher_prompt=prompt))
    return out


@pytest.fixture(scope="module")
def student(task_models: dict[str, Path]) -> tuple[Any, Any]:
    tok = AutoTokenizer.from_pretrained(task_models["student"])
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(task_models["student"]), tok


def rollouts(student: tuple[Any, Any], scorer: FakeScorer, teacher_tok: Any, **kw: Any) -> Rollouts:
    model, tok = student
    prompts = policy_prompts(samples(), tok, "ft_cot", reuse_teacher_prompts=True)
    aligner = Aligner(teacher_tok, tok, model.get_input_embeddings().num_embeddings)
    args: dict[str, Any] = {"fmt": "ft_cot", "batch_size": 6, "max_new_tokens": 12, "temperature": 1.0, "top_k": 4}
    return Rollouts(prompts, tok, scorer, aligner, **{**args, **kw})  # type: ignore[arg-type]


def test_prompts_are_one_per_question_and_keep_or_rebuild_the_teacher_prompt(student: tuple[Any, Any]) -> None:
    _, tok = student
    kept = policy_prompts(samples(), tok, "ft_cot", reuse_teacher_prompts=True)
    assert len(kept) == 12 and kept[0].teacher_prompt.startswith("Q: Last letter of")
    assert tok.decode(kept[0].student_ids, skip_special_tokens=True).endswith("###")
    other = policy_prompts(samples(), tok, "ft_cot", reuse_teacher_prompts=False, teacher_chat=True)
    assert other[0].teacher_chat == (("user", samples()[0].question),)
    assert other[0].teacher_prefix == "Let's think step by step."
    q = other[0].query(completion=" x")
    assert q.chat and q.assistant_prefix == "Let's think step by step." and q.completion == " x"


def test_a_batch_of_student_samples_carries_teacher_targets_where_they_align(
    student: tuple[Any, Any], task_tokenizers: dict[str, Any], task_models: dict[str, Path]
) -> None:
    teacher_tok = task_tokenizers["teacher"]
    scorer = FakeScorer(teacher_tok, task_models["teacher_tokenizer"])
    ro = rollouts(student, scorer, teacher_tok)
    batch, figures = ro.batch(student[0], step=3)
    labels = batch["labels"]
    supervised = labels != IGNORE
    assert int(supervised.sum()) == figures["on_policy_tokens"] > 0
    present = torch.isfinite(batch["kd_logprobs"].float()).any(-1)
    assert not (present & ~supervised).any()  # targets only on generated tokens
    assert 0 < int(present.sum()) < int(supervised.sum())  # the format's tail has none
    assert figures["on_policy_scored_fraction"] == pytest.approx(int(present.sum()) / int(supervised.sum()))
    assert figures["on_policy_teacher_nll"] == pytest.approx(-np.log(0.7), rel=1e-5)
    # Each query: the sample's own teacher prompt, then the parsed rationale after a space.
    assert scorer.queries and all(q.prompt.startswith("Q: Last letter of") for q in scorer.queries)
    assert all(q.completion.startswith(" ") and "-->" not in q.completion for q in scorer.queries)
    # Deterministic per step (ranks and resumes agree), different across steps.
    again, _ = ro.batch(student[0], step=3)
    assert torch.equal(again["input_ids"], batch["input_ids"])
    other, _ = ro.batch(student[0], step=4)
    assert (
        not torch.equal(other["input_ids"], batch["input_ids"]) or other["input_ids"].shape != batch["input_ids"].shape
    )


def test_the_student_support_is_its_own_top_k_at_each_sampled_token(
    student: tuple[Any, Any], task_models: dict[str, Path]
) -> None:
    model, tok = student
    scorer = FakeScorer(tok, task_models["student"])  # a teacher with the student's vocabulary
    ro = rollouts(student, scorer, tok, support="student_topk", packing=False)
    batch, figures = ro.batch(model, step=1)
    assert scorer.queries and all(q.candidates_per_token == 4 and q.completion_ids for q in scorer.queries)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    rows = torch.isfinite(batch["kd_logprobs"].float()).any(-1)
    assert rows.any()
    want = logits[rows].topk(4, dim=-1).indices
    got = batch["kd_ids"][rows].long()
    assert torch.equal(got.sort(-1).values, want.sort(-1).values)  # row t: the support that sampled token t
    lps = batch["kd_logprobs"][rows].float()
    assert torch.allclose(lps, torch.tensor([-0.1, -0.2, -0.3, -0.4]).expand_as(lps), atol=1e-3)
    assert figures["on_policy_scored_fraction"] > 0


def test_a_completion_ending_in_eos_keeps_no_target_on_the_eos_under_student_support(
    student: tuple[Any, Any], task_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tok = student
    scorer = FakeScorer(tok, task_models["student"])
    ro = rollouts(student, scorer, tok, support="student_topk", packing=False, batch_size=1)
    eos = tok.eos_token_id
    ended = np.array([5, 6, 7, eos], dtype=np.int64)  # the teacher scores the body only (3 tokens)
    support = np.arange(16, dtype=np.int64).reshape(4, 4)
    monkeypatch.setattr(ro, "generate", lambda *a, **k: ([ended], [support]))
    batch, figures = ro.batch(model, step=0)
    assert len(scorer.queries[-1].completion_ids) == 3
    targets = torch.isfinite(batch["kd_logprobs"].float()).any(-1)
    assert int(targets.sum()) == 3  # the three body tokens; none on the EOS
    assert figures["on_policy_scored_fraction"] == pytest.approx(3 / 4)


def test_the_recipe_trains_on_student_samples_on_a_share_of_its_steps(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    task_models: dict[str, Path],
    task_tokenizers: dict[str, Any],
) -> None:
    from cotdistill.trainer import rollouts as rollouts_module
    from tests.unit.trainer.test_recipe import Recorder, make_config, run

    made: list[FakeScorer] = []

    def fake(addresses: list[str], *, top_k: int, **_: Any) -> FakeScorer:
        made.append(FakeScorer(task_tokenizers["teacher"], task_models["teacher_tokenizer"], k=top_k))
        return made[-1]

    monkeypatch.setattr(rollouts_module, "TeacherScorer", fake)
    train = synthetic.write_samples(tmp_path / "data" / "part-0.parquet", synthetic.words(64, 1))
    config = make_config(
        task_models,
        {"train": train},
        tmp_path / "out",
        on_policy={"fraction": 0.5, "teacher_addresses": ["127.0.0.1:1"], "max_new_tokens": 10, "divergence": "jsd"},
        hyperparameters={"max_steps": 8, "batch_size": 4, "gradient_accumulation": 2},
    )
    recipe, reporter = run(config, Recorder())
    assert recipe.state.step == 8
    recipe.cleanup()
    assert made and made[0].closed  # cleanup closed the client
    expected = [is_on_policy_step(s, 0.5, config.hyperparameters.seed) for s in range(8)]
    assert [m["on_policy_fraction"] for _, m in reporter.steps] == [float(e) for e in expected]
    assert any(expected) and not all(expected)
    for (_, metrics), on in zip(reporter.steps, expected, strict=True):
        assert np.isfinite(metrics["loss"])
        assert ("on_policy_loss" in metrics) == on and ("sft" in metrics) == (not on)
        if on:
            assert metrics["on_policy_tokens"] > 0 and metrics["teacher_scored_tokens_per_second"] > 0
    # Two micro-batches per on-policy step, each one Score query per sample with a rationale.
    assert 0 < len(made[0].queries) <= sum(expected) * 2 * 4


def test_prompt_dataclass_defaults() -> None:
    p = PolicyPrompt(np.array([1, 2]), "Q: x\nA:")
    assert p.query(completion=" y").prompt == "Q: x\nA:" and not p.query(completion=" y").chat

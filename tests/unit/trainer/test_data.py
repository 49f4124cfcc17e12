"""Data: teacher prompts -> student pairs, JSONL input, label masking, packing layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cotdistill.common.errors import InvalidArgument
from cotdistill.trainer.data import (
    IGNORE,
    ExampleBuilder,
    Sample,
    answer_only_partner,
    build_batches,
    load_samples,
    question_from_prompt,
    render_pair,
)


def test_question_is_recovered_from_teacher_prompts() -> None:
    assert question_from_prompt("Q: How many pens?\nA: Let's think step by step.") == "How many pens?"
    few_shot = "Q: a?\nA: b. The answer is 1.\n\nQ: What is 2+2?\nA:"
    assert question_from_prompt(few_shot) == "What is 2+2?"
    assert question_from_prompt("ex\n\nQuestion: Why?\nLet's think step by step\n") == "Why?"
    assert question_from_prompt("Already a plain question?") == "Already a plain question?"


def test_chat_rendered_teacher_prompts_give_back_their_question(tmp_path: Path) -> None:
    from cotdistill.common.samples import SampleRecord, write_shard

    template = "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}<|assistant|>\n"
    prompt = "<|system|>\nBe brief.<|end|>\n<|user|>\nTom has 3 apples.\nHow many?<|end|>\n<|assistant|>\nLet's think"
    assert question_from_prompt(prompt, template) == "Tom has 3 apples.\nHow many?"
    assert question_from_prompt(prompt) == prompt.strip()  # without the template: no Q: block to find
    record = SampleRecord(example_id="e", sample_index=0, prompt=prompt, rationale=" 3.", prediction="3", correct=True)
    meta = {"prompt_template": "chat", "teacher": {"tokenizer": {"chat_template": template}}}
    write_shard(tmp_path / "part-00000.parquet", [record], meta)
    (sample,), _ = load_samples([str(tmp_path)])
    assert sample.question == "Tom has 3 apples.\nHow many?" and sample.teacher_prompt == prompt


def test_formats_and_answer_only_partners() -> None:
    sample = Sample(question="Last letter of abc?", rationale="The word abc ends with c.", answer="c")
    assert render_pair(sample, "ft_cot", False) == (
        "Last letter of abc? ###",
        " The word abc ends with c. --> c END",
        True,
    )
    assert render_pair(sample, "ft_cot", True) == ("Last letter of abc? ###", " c END", False)
    prompt, completion, spells = render_pair(sample, "fu_zs_cot", False)
    assert prompt.startswith("Q: Last letter of abc?") and "The word abc ends with c." in completion and spells
    assert answer_only_partner("fu_zs_cot") == "fu_zs_answer" and answer_only_partner("fu_ic_cot") == "fu_ic_answer"
    assert answer_only_partner("flan_cot_fs_4").startswith("flan_answer_fs_")


def test_jsonl_samples_with_and_without_topk(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    rows: list[dict[str, Any]] = [
        {"question": "q1", "rationale": "r1", "answer": "a1"},
        {"question": "q2", "rationale": "r2", "answer": "a2", "correct": False},
        {
            "prompt": "p3",
            "completion": " c3",
            "token_ids": [5, 6],
            "top_ids": [[5, 1], [6, 2]],
            "top_logprobs": [[-0.1, -2.0], [-0.2, -3.0]],
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    samples, _ = load_samples([str(path)])
    assert [s.question for s in samples] == ["q1", "p3"]  # the known-wrong one is dropped
    assert samples[1].teacher is not None and samples[1].teacher.top_ids.shape == (2, 2)
    (tmp_path / "bad.jsonl").write_text('{"question": "x"}\nnot json\n')
    with pytest.raises(InvalidArgument, match=r"bad.jsonl:2"):
        load_samples([str(tmp_path / "bad.jsonl")])


def test_labels_cover_the_completion_only_and_packing_restarts_positions(task_tokenizers: dict[str, Any]) -> None:
    tok = task_tokenizers["student"]
    samples = [Sample(f"Last letter of {w}?", f"The word {w} ends with {w[-1]}.", w[-1]) for w in ("abc", "xyzzy", "q")]
    examples = ExampleBuilder(tok, fmt="ft_cot", encoder_decoder=False, max_seq_len=0).build(samples)
    for sample, ex in zip(samples, examples, strict=True):
        prompt_len = len(tok(f"{sample.question} ###")["input_ids"])
        supervised = np.nonzero(ex.labels != IGNORE)[0]
        assert supervised[0] == prompt_len - 1 and supervised[-1] == len(ex.input_ids) - 2
        assert (ex.labels[supervised] == ex.input_ids[supervised + 1]).all()  # pre-shifted targets
        assert tok.decode(ex.labels[supervised], skip_special_tokens=True).strip().endswith("END")
    batch = build_batches(examples, batch_size=3, packing=True, pad_id=tok.pad_token_id, seed=0, pack_width=200)[0]
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    positions = batch["position_ids"][0].tolist()
    assert positions.count(0) == 3 and int(batch["num_tokens"]) == sum(len(e.input_ids) for e in examples)
    assert int((batch["labels"] != IGNORE).sum()) == sum(int((e.labels != IGNORE).sum()) for e in examples)


def test_too_long_examples_are_dropped_and_counted(task_tokenizers: dict[str, Any]) -> None:
    builder = ExampleBuilder(task_tokenizers["student"], fmt="ft_cot", encoder_decoder=False, max_seq_len=12)
    out = builder.build([Sample("Last letter of abc?", "The word abc ends with c.", "c")])
    assert out == [] and builder.stats.dropped_too_long == 1

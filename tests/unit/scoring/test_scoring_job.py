"""The scoring job against in-process fake teachers: gold and shard rationales, chat prompts,
exactly once under retries, resume, and the shards the filter and trainer read."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from rich.console import Console

from cotdistill.common import tasks
from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import ConfigError
from cotdistill.common.samples import SampleRecord, read_records, read_samples, shard_metadata, write_shard
from cotdistill.pipeline.run_config import RunConfig, ScoringSection
from cotdistill.pipeline.sampling.stage import run_filter
from cotdistill.pipeline.scoring.stage import plan, run_scoring
from cotdistill.pipeline.scoring.units import ScoreRef
from tests.unit.sampling.fake_teacher import FakeTeacher, Fault, fake_teachers

DATASET = "synthetic_arithmetic"


@pytest.fixture
async def teachers() -> AsyncIterator[list[tuple[FakeTeacher, str]]]:
    async with fake_teachers(2) as started:
        yield started


def config(tmp_path: Path, addresses: list[str], **scoring: object) -> RunConfig:
    section = {"dataset": DATASET, "split": "train", "limit": 10, "unit_size": 3, "top_k_logprobs": 4,
               "concurrency": 2, "retry_delay_s": 0.0, **scoring}  # fmt: skip
    return RunConfig.model_validate(
        {
            "name": "scored",
            "output_dir": str(tmp_path),
            "teacher": {"addresses": addresses, "connect_timeout_s": 5},
            "scoring": section,
        }
    )


def rows(tmp_path: Path) -> list[SampleRecord]:
    out: list[SampleRecord] = []
    for shard in sorted((tmp_path / "scored" / "samples").glob("part-*.parquet")):
        out.extend(read_records(shard)[0])
    return out


def events(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "scored" / "samples" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_gold_rationales_scored_once_each_with_the_raw_prompt(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    cfg = config(tmp_path, [a for _, a in teachers])
    store = ArtifactStore(tmp_path / "scored")
    result = await run_scoring(cfg, store)
    assert result.units_done == result.units_total == 4 and result.samples == 10
    examples = {e.id: e for e in tasks.load_dataset(DATASET, "train", limit=10)}
    got = rows(tmp_path)
    assert Counter((r.example_id, r.sample_index) for r in got) == {(i, 0): 1 for i in examples}
    for r in got:
        e = examples[r.example_id]
        # Raw Zero-shot-CoT prompt ("... step by step."): the rationale follows after one space.
        assert r.prompt == tasks.render_teacher_prompt("zero_shot_cot", e)
        assert r.rationale == " " + (e.rationale or "")
        assert list(r.token_ids) == [ord(c) % 300 for c in r.rationale]  # what the teacher scored
        assert r.top_k == 4 and len(r.top_ids) == 4 * len(r.token_ids)
        assert r.correct is True and r.prediction == r.gold == e.answer
    assert all(f.calls for f, _ in teachers)  # both replicas got units
    meta = shard_metadata(next((tmp_path / "scored" / "samples").glob("part-*.parquet")))
    assert meta.job["kind"] == "score" and meta.job["source"] == f"gold:{DATASET}/train"
    assert meta.prompt_template == "raw" and meta.logprob_mode == "raw"
    # The filter stage and the sample reader take scored shards as they take sampled ones.
    stats = run_filter(store, Console(quiet=True))
    assert stats["kept"] == 10
    assert read_samples(tmp_path / "scored" / "train").k == 4


async def test_a_chat_teacher_gets_conversations_rendered_as_sampling_renders_them(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    (fake, address), _ = teachers
    fake.chat_template = "{{ messages }}"  # any template: the replica renders, the driver sends turns
    cfg = config(tmp_path, [address], limit=4, system_prompt="Be brief.")
    await run_scoring(cfg, ArtifactStore(tmp_path / "scored"))
    items = [item for request in fake.score_requests for item in request.items]
    assert len(items) == 4 and all(item.HasField("chat") and not item.prompt for item in items)
    examples = tasks.load_dataset(DATASET, "train", limit=4)
    chat = tasks.teacher_chat_prompt("zero_shot_cot", examples[0], system="Be brief.")
    assert [(m.role, m.content) for m in items[0].chat.messages] == list(chat.messages)
    assert items[0].chat.assistant_prefix == chat.prefix == "Let's think step by step."
    assert items[0].completion == " " + (examples[0].rationale or "")
    got = rows(tmp_path)
    assert got[0].prompt.startswith("<chat>Be brief.|")  # the prompt the replica says it rendered
    meta = shard_metadata(next((tmp_path / "scored" / "samples").glob("part-*.parquet")))
    assert meta.prompt_template == "chat"


async def test_a_failed_score_call_is_retried_on_the_other_replica_exactly_once(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    (bad, bad_address), (_, good_address) = teachers
    bad.faults = [Fault(grpc.StatusCode.UNAVAILABLE)] * 3
    cfg = config(tmp_path, [bad_address, good_address], concurrency=1)
    await run_scoring(cfg, ArtifactStore(tmp_path / "scored"))
    assert Counter((r.example_id, r.sample_index) for r in rows(tmp_path)).most_common(1)[0][1] == 1
    assert len(rows(tmp_path)) == 10
    log = events(tmp_path)
    failed = [e for e in log if e["event"] == "unit_failed"]
    assert failed and {e["replica"] for e in failed} == {bad_address}
    for failure in failed:
        assert any(
            e["event"] == "unit_completed" and e["unit_id"] == failure["unit_id"] and e["replica"] == good_address
            for e in log
        )


async def test_rerun_scores_nothing_and_a_changed_job_is_refused(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    addresses = [a for _, a in teachers]
    store = ArtifactStore(tmp_path / "scored")
    await run_scoring(config(tmp_path, addresses), store)
    calls = sum(len(f.calls) for f, _ in teachers)
    again = await run_scoring(config(tmp_path, addresses), store)
    assert again.sampled == [] and again.units_done == 4
    assert sum(len(f.calls) for f, _ in teachers) == calls
    # Raising the limit keeps every earlier full unit: only the new rationales are scored.
    more = await run_scoring(config(tmp_path, addresses, limit=12), store)
    assert len(more.sampled) == 1 and more.units_done == 4  # 12 rationales in units of 3
    assert len(rows(tmp_path)) == 12
    with pytest.raises(ConfigError, match=r"different job \(changed: params.top_k_logprobs\)"):
        await run_scoring(config(tmp_path, addresses, top_k_logprobs=5), store)


async def test_shards_of_another_teacher_are_rescored_keeping_their_rows(tmp_path: Path, teachers) -> None:  # type: ignore[no-untyped-def]
    examples = tasks.load_dataset(DATASET, "train", limit=3)
    records = [
        SampleRecord(
            example_id=e.id,
            sample_index=s,
            prompt="<|other teacher's prompt|>",
            rationale="" if (i, s) == (2, 1) else f"\nI think {e.answer} (sample {s}).",
            dataset=DATASET,
            split="train",
            prediction=e.answer if s == 0 else "0",
            gold=e.answer,
            correct=s == 0,
            token_ids=[1, 2],
            token_logprobs=[-1.0, -1.0],
        )
        for i, e in enumerate(examples)
        for s in range(2)
    ]
    other = tmp_path / "other"
    other.mkdir()
    write_shard(other / "part-00000.parquet", records, {"teacher": {"model_id": "other"}})
    cfg = config(tmp_path, [teachers[0][1]], paths=[str(other)], limit=None)
    await run_scoring(cfg, ArtifactStore(tmp_path / "scored"))
    got = {(r.example_id, r.sample_index): r for r in rows(tmp_path)}
    assert set(got) == {(e.id, s) for e in examples for s in range(2)} - {(examples[2].id, 1)}  # empty one skipped
    first = got[(examples[0].id, 0)]
    # This teacher's own prompt for the question; the other teacher's text and verdict are kept.
    assert first.prompt == tasks.render_teacher_prompt("zero_shot_cot", examples[0])
    assert first.rationale == f"\nI think {examples[0].answer} (sample 0)."
    assert first.correct is True and got[(examples[0].id, 1)].correct is False
    assert first.top_k == 4 and list(first.token_ids) == [ord(c) % 300 for c in first.rationale]


def test_a_shard_row_whose_question_is_unknown_names_the_file_and_row(tmp_path: Path) -> None:
    write_shard(
        tmp_path / "part-00000.parquet",
        [SampleRecord(example_id="nope", sample_index=0, prompt="p", rationale="r", dataset=DATASET, split="train")],
        {},
    )
    with pytest.raises(ConfigError, match=r"part-00000.parquet: row 0: example 'nope' is not in synthetic_arithmetic"):
        plan(ScoringSection(paths=[str(tmp_path)]))
    with pytest.raises(ConfigError, match="not a Parquet sample shard"):
        plan(ScoringSection(paths=[str(tmp_path / "missing.parquet")]))


def test_a_dataset_without_rationales_is_refused_with_the_ones_that_have_them(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"scoring.dataset.*multiarith/train has no rationales.*gsm8k"):
        plan(ScoringSection(dataset="multiarith", split="train"))


@pytest.mark.parametrize(
    ("prompt", "prefix", "use_chat", "rationale", "expected"),
    [
        ("Q: q\nA: Let's think step by step.", None, False, "5 + 3 = 8.", " 5 + 3 = 8."),
        ("Q: q\nA: Let's think step by step.", None, False, " 5 + 3 = 8.", " 5 + 3 = 8."),  # sampled: as is
        ("Q: q\nA: Let's think step by step.", None, False, "\n5 + 3 = 8.", "\n5 + 3 = 8."),
        ("Q: q\nA:", None, False, "5 + 3 = 8.", " 5 + 3 = 8."),
        ("Question: q\nLet's think step by step\n", None, False, " 5 + 3 = 8.", "5 + 3 = 8."),
        ("raw", "Let's think step by step.", True, "5 + 3 = 8.", " 5 + 3 = 8."),
        ("raw", "", True, " 5 + 3 = 8.", "5 + 3 = 8."),  # a fresh assistant turn
        ("raw", "Let's think step by step\n", True, "5 + 3 = 8.", "5 + 3 = 8."),
    ],
)
def test_rationales_join_their_prompt_as_a_sampled_one_would(
    prompt: str, prefix: str | None, use_chat: bool, rationale: str, expected: str
) -> None:
    chat = tasks.ChatPrompt((("user", "q"),), prefix) if prefix is not None else None
    ref = ScoreRef(id="x", prompt=prompt, chat=chat, rationale=rationale)
    assert ref.completion(use_chat) == expected
    assert ScoreRef(id="x", prompt=prompt, chat=chat, rationale=rationale, separator="\n").completion(use_chat) == (
        "\n" + rationale
    )

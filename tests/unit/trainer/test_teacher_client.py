"""The trainer's Score client against in-process fake teachers: order, bounded concurrency,
retries on another replica, deadlines, errors naming the cause, and the stats the loop reports."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from cotdistill.common.errors import InvalidArgument, Unavailable
from cotdistill.common.retry import RetryPolicy
from cotdistill.trainer.teacher_client import ScoreQuery, TeacherScorer
from tests.unit.sampling.fake_teacher import FakeTeacher, Fault, fake_teachers

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)


@pytest.fixture
async def teachers() -> AsyncIterator[list[tuple[FakeTeacher, str]]]:
    async with fake_teachers(2, delay_s=0.02) as started:
        yield started


def scorer(addresses: list[str], **kw: object) -> TeacherScorer:
    args: dict[str, object] = {"top_k": 3, "concurrency": 2, "items_per_call": 4, "retry": FAST, "timeout_s": 5.0}
    return TeacherScorer(addresses, **{**args, **kw})  # type: ignore[arg-type]


async def test_scores_come_back_in_order_with_bounded_concurrency_over_both_replicas(teachers) -> None:  # type: ignore[no-untyped-def]
    client = scorer([a for _, a in teachers])
    try:
        info = await asyncio.to_thread(client.info)
        assert info.model_id == "fake-teacher" and info.tokenizer.content_hash == "abc123"
        queries = [ScoreQuery(prompt=f"Q{i}", completion=f" answer {i}") for i in range(40)]
        results = await asyncio.to_thread(client.score, queries)
        assert [list(r.token_ids) for r in results] == [[ord(c) % 300 for c in q.completion] for q in queries]
        assert all(r.top_ids.shape == (len(r.token_ids), 3) for r in results)
        assert all(f.calls for f, _ in teachers)  # both replicas got calls
        assert sum(f.max_in_flight for f, _ in teachers) <= 2 and max(f.max_in_flight for f, _ in teachers) >= 1
        assert sum(len(f.score_requests) for f, _ in teachers) == 10  # 40 items, 4 per call
        stats = client.stats.take()
        assert stats["teacher_score_latency_s"] >= 0.02 and stats["teacher_scored_tokens_per_second"] > 0
        assert client.stats.take()["teacher_score_latency_s"] == 0.0  # reset after each window
    finally:
        client.close()


async def test_a_failed_call_is_retried_on_the_other_replica(teachers) -> None:  # type: ignore[no-untyped-def]
    (bad, bad_address), (good, good_address) = teachers
    bad.faults = [Fault(grpc.StatusCode.UNAVAILABLE)] * 10
    client = scorer([bad_address, good_address], concurrency=1)
    try:
        results = await asyncio.to_thread(client.score, [ScoreQuery(prompt="Q", completion=f"x{i}") for i in range(8)])
        assert [list(r.token_ids) for r in results] == [[ord("x"), ord(str(i))] for i in range(8)]
        assert client.stats.take()["teacher_score_retries"] >= 1
        assert len(good.score_requests) == 2 and bad.score_requests  # every call ended on the good replica
    finally:
        client.close()


async def test_token_ids_and_candidates_travel_both_ways(teachers) -> None:  # type: ignore[no-untyped-def]
    client = scorer([teachers[0][1]])
    try:
        query = ScoreQuery(prompt="Q", completion_ids=[5, 6], candidate_ids=[5, 7, -1, 6, 8, 9], candidates_per_token=3)
        (result,) = await asyncio.to_thread(client.score, [query])
        assert list(result.token_ids) == [5, 6]
        assert result.candidate_logprobs is not None and result.candidate_logprobs.shape == (2, 3)
        np.testing.assert_allclose(result.candidate_logprobs[1], [-0.06, -0.08, -0.09], rtol=1e-6)
        assert math.isinf(result.candidate_logprobs[0, 2])
    finally:
        client.close()


async def test_invalid_argument_is_not_retried_and_names_the_cause(teachers) -> None:  # type: ignore[no-untyped-def]
    (fake, address), _ = teachers
    fake.faults = [Fault(grpc.StatusCode.INVALID_ARGUMENT)]
    client = scorer([address])
    try:
        with pytest.raises(InvalidArgument, match=r"on_policy: the teacher at .* refused: INVALID_ARGUMENT"):
            await asyncio.to_thread(client.score, [ScoreQuery(prompt="Q", completion="x")])
        assert len(fake.score_requests) == 1
    finally:
        client.close()


async def test_a_call_past_its_deadline_everywhere_is_unavailable(teachers) -> None:  # type: ignore[no-untyped-def]
    for fake, _ in teachers:
        fake.delay_s = 1.0
    client = scorer([a for _, a in teachers], timeout_s=0.2)
    try:
        with pytest.raises(Unavailable, match=r"failed 3 times .* DEADLINE_EXCEEDED"):
            await asyncio.to_thread(client.score, [ScoreQuery(prompt="Q", completion="x")])
    finally:
        client.close()

"""The training loop's client of the teacher's ``Score``: on-policy samples -> the teacher's top-k.

The recipe is synchronous; the client runs its gRPC calls on a private asyncio loop in a thread,
over a :class:`~cotdistill.common.grpc_client.ReplicaPool` (one channel per replica; a ``dns:///``
name such as the teacher's Kubernetes Service expands to one replica per pod). A batch of
samples is cut into calls of ``items_per_call``; at most ``concurrency`` calls are in flight
across the replicas; each call has a deadline (``timeout_s``) and a failed call is retried on
another replica after a backoff (:class:`~cotdistill.common.retry.RetryPolicy`), as the sampling
job retries its units. Only transport failures are retried: INVALID_ARGUMENT is this run's own
mistake and fails the step at once with the teacher's message.

:class:`ScoringStats` keeps what the loop reports per logging window: the latency of Score calls,
scored tokens per second, retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np

from cotdistill.common.errors import CotdistillError, InvalidArgument, Unavailable
from cotdistill.common.grpc_client import Replica, ReplicaPool
from cotdistill.common.retry import CallFailed, IncompleteUnit, RetryPolicy, on_replicas
from cotdistill.common.samples import TeacherFacts
from cotdistill.common.teacher_info import fetch_teacher_info
from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ScoreQuery:
    """One sequence for the teacher to score: its prompt and the completion (text or teacher ids).

    ``candidate_ids`` (T*m, -1 pads) asks for the teacher's logprobs of given ids at each
    completion position (e.g. the student's own top-m); it needs ``completion_ids``.
    """

    prompt: str
    completion: str = ""
    prompt_rendered: bool = False
    completion_ids: Sequence[int] = ()
    candidate_ids: Sequence[int] = ()
    candidates_per_token: int = 0
    chat: tuple[tuple[str, str], ...] = ()  # (role, content) turns instead of prompt text
    assistant_prefix: str = ""  # with chat: text that opens the assistant's turn


@dataclass
class ScoreResult:
    """The teacher's view of one completion, as arrays.

    token_ids (T,) the completion in the teacher's vocabulary; token_logprobs (T,); top_ids and
    top_logprobs (T, k); candidate_logprobs (T, m) or None.
    """

    token_ids: np.ndarray
    token_logprobs: np.ndarray
    top_ids: np.ndarray
    top_logprobs: np.ndarray
    candidate_logprobs: np.ndarray | None = None
    prompt_tokens: int = 0


@dataclass
class ScoringStats:
    """Counters since the last :meth:`take` (the loop reports them once per logging window)."""

    calls: int = 0
    items: int = 0
    tokens: int = 0
    retries: int = 0
    call_seconds: float = 0.0
    busy_seconds: float = 0.0  # wall time spent inside score(), for tokens/s
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self) -> dict[str, float]:
        """``teacher_score_latency_s`` (mean per call), ``teacher_scored_tokens_per_second`` (over
        the time the loop waited for scores), ``teacher_score_retries``; then reset."""
        with self._lock:
            out = {
                "teacher_score_latency_s": self.call_seconds / self.calls if self.calls else 0.0,
                "teacher_scored_tokens_per_second": self.tokens / self.busy_seconds if self.busy_seconds else 0.0,
                "teacher_score_retries": float(self.retries),
            }
            self.calls = self.items = self.tokens = self.retries = 0
            self.call_seconds = self.busy_seconds = 0.0
        return out

    def record_call(self, seconds: float, items: int, tokens: int) -> None:
        with self._lock:
            self.calls += 1
            self.items += items
            self.tokens += tokens
            self.call_seconds += seconds


class TeacherScorer:
    """Score over the teacher replicas at ``addresses``; see the module docstring.

    Args:
        addresses: host:port per replica, or ``dns:///name:port`` (one replica per record).
        top_k: candidates per completion token to ask for (1-20).
        concurrency: Score calls in flight at once, across replicas.
        items_per_call: sequences per Score call.
        timeout_s: deadline of one call.
        retry: attempts and backoff per call (each retry on another replica when there is one).
        connect_timeout_s: how long :meth:`info` waits for a replica to answer (model loading).
    """

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        top_k: int,
        concurrency: int = 4,
        items_per_call: int = 16,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 120.0,
    ) -> None:
        if not addresses:
            raise InvalidArgument("on_policy.teacher_addresses", "at least one teacher address is needed")
        if concurrency < 1 or items_per_call < 1:
            raise ValueError("concurrency and items_per_call must be >= 1")
        self.addresses = list(addresses)
        self.top_k = top_k
        self.concurrency = concurrency
        self.items_per_call = items_per_call
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy(max_attempts=4, base_delay_s=0.2, max_delay_s=5.0)
        self.connect_timeout_s = connect_timeout_s
        self.stats = ScoringStats()
        self._rng = random.Random()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="teacher-scorer", daemon=True)
        self._thread.start()
        self._pool: ReplicaPool | None = None
        self._info: TeacherFacts | None = None

    # ---- public, synchronous -------------------------------------------------------------------

    def info(self) -> TeacherFacts:
        """What the teacher replicas serve (their Info)."""
        if self._info is None:
            self._info = self._run(self._fetch_info())
        return self._info

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreResult]:
        """Scores of ``queries``, in order; raises Unavailable when a call's retries ran out."""
        if not queries:
            return []
        started = time.perf_counter()
        try:
            return self._run(self._score_all(list(queries)))
        finally:
            with self.stats._lock:
                self.stats.busy_seconds += time.perf_counter() - started

    def close(self) -> None:
        if self._pool is not None:
            self._run(self._pool.close())
            self._pool = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    # ---- on the client's loop ------------------------------------------------------------------

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    def _replicas(self) -> ReplicaPool:
        if self._pool is None:
            # Channels belong to the loop they are created on: this one. No transparent retries:
            # a failed call moves to another replica instead of stalling on a dead one.
            self._pool = ReplicaPool(self.addresses, transparent_retries=False)
        return self._pool

    async def _fetch_info(self) -> TeacherFacts:
        return await fetch_teacher_info(self._replicas(), timeout_s=self.connect_timeout_s)

    async def _score_all(self, queries: list[ScoreQuery]) -> list[ScoreResult]:
        gate = asyncio.Semaphore(self.concurrency)
        chunks = [queries[i : i + self.items_per_call] for i in range(0, len(queries), self.items_per_call)]

        async def one(chunk: list[ScoreQuery]) -> list[ScoreResult]:
            async with gate:
                return await self._call_with_retries(chunk)

        parts = await asyncio.gather(*(one(c) for c in chunks))
        return [r for part in parts for r in part]

    async def _call_with_retries(self, chunk: list[ScoreQuery]) -> list[ScoreResult]:
        request = teacher_pb2.ScoreRequest(items=[_item(q, i) for i, q in enumerate(chunk)], top_k_logprobs=self.top_k)

        def failed(replica: Replica, attempt: int, what: str) -> None:
            if attempt < self.retry.max_attempts:
                with self.stats._lock:
                    self.stats.retries += 1

        async def attempt(replica: Replica, n: int) -> tuple[list[ScoreResult], float]:
            started = time.perf_counter()
            results = await self._call(replica, request, len(chunk))
            return results, time.perf_counter() - started

        try:
            (results, seconds), _, _ = await on_replicas(
                self._replicas(), attempt, self.retry, rng=self._rng, failed=failed
            )
        except CallFailed as err:
            if err.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument("on_policy", f"the teacher at {err.replica} refused: {err.what}") from None
            if not err.retryable:
                raise CotdistillError(f"teacher Score on {err.replica} failed: {err.what}") from None
            raise Unavailable(
                f"teacher Score failed {err.attempts} times on {', '.join(self.addresses)} (last: {err.what})"
            ) from None
        self.stats.record_call(seconds, len(chunk), sum(len(r.token_ids) for r in results))
        return results

    async def _call(self, replica: Replica, request: teacher_pb2.ScoreRequest, n: int) -> list[ScoreResult]:
        stub = teacher_pb2_grpc.TeacherServiceStub(replica.channel)
        reply = await stub.Score(request, timeout=self.timeout_s)
        if [c.id for c in reply.completions] != [str(i) for i in range(n)]:
            raise IncompleteUnit(f"{replica.address} answered {len(reply.completions)} of {n} items")
        return [_result(c, request.items[i].candidates_per_token) for i, c in enumerate(reply.completions)]


def _item(query: ScoreQuery, index: int) -> teacher_pb2.ScoreItem:
    chat = None
    if query.chat:
        chat = teacher_pb2.ChatPrompt(
            messages=[teacher_pb2.ChatMessage(role=r, content=c) for r, c in query.chat],
            assistant_prefix=query.assistant_prefix,
        )
    return teacher_pb2.ScoreItem(
        id=str(index),
        prompt="" if chat is not None else query.prompt,
        chat=chat,
        prompt_rendered=query.prompt_rendered,
        completion=query.completion,
        completion_ids=list(query.completion_ids),
        candidate_ids=list(query.candidate_ids),
        candidates_per_token=query.candidates_per_token,
    )


def _result(scored: teacher_pb2.ScoredCompletion, m: int) -> ScoreResult:
    lp = scored.logprobs
    t, k = len(lp.token_ids), lp.k
    candidates = None
    if m and scored.candidate_logprobs:
        candidates = np.asarray(scored.candidate_logprobs, dtype=np.float32).reshape(t, m)
    return ScoreResult(
        token_ids=np.asarray(lp.token_ids, dtype=np.int64),
        token_logprobs=np.asarray(lp.token_logprobs, dtype=np.float32),
        top_ids=np.asarray(lp.top_ids, dtype=np.int64).reshape(t, k),
        top_logprobs=np.asarray(lp.top_logprobs, dtype=np.float32).reshape(t, k),
        candidate_logprobs=candidates,
        prompt_tokens=scored.prompt_tokens,
    )

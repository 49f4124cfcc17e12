"""When a failed call to a replica is tried again (on another one), and how long to wait first.

The sampling and scoring jobs retry a failed work unit on another teacher replica; the trainer's
on-policy scoring client retries a failed Score call the same way.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from cotdistill.common.grpc_client import Replica, ReplicaPool

log = logging.getLogger(__name__)

T = TypeVar("T")

# A replica that died, restarted, was full, drained for shutdown, or cut the stream: the unit's
# work is lost but another replica (or the same one later) can do it.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


class IncompleteUnit(Exception):
    """A call ended without error but without every expected result (a cut Sample stream, a Score
    reply short of items): retried like a transport failure."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; only transport-level failures are retried.

    INVALID_ARGUMENT, UNIMPLEMENTED and the like are the job's own mistake: retrying would only
    repeat it on every replica, so they fail the job at once with the teacher's message.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    retryable: frozenset[grpc.StatusCode] = field(default=RETRYABLE_CODES)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts: must be >= 1, got {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("base_delay_s/max_delay_s: need 0 <= base_delay_s <= max_delay_s")

    def is_retryable(self, error: BaseException) -> bool:
        if isinstance(error, IncompleteUnit):
            return True
        if isinstance(error, grpc.aio.AioRpcError):
            return error.code() in self.retryable
        return False

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return (rng or random).uniform(0, cap)


class CallFailed(Exception):
    """A call failed on its last replica: ``retryable`` False when it was not worth retrying
    (the request's own mistake), True when the attempts ran out."""

    def __init__(self, what: str, *, replica: str, attempts: int, retryable: bool, code: grpc.StatusCode | None):
        super().__init__(what)
        self.what, self.replica, self.attempts, self.retryable, self.code = what, replica, attempts, retryable, code


def describe(error: BaseException) -> str:
    """``CODE: details`` of a gRPC error, the message of anything else."""
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error)


async def on_replicas(
    pool: ReplicaPool,
    attempt: Callable[[Replica, int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    rng: random.Random | None = None,
    started: Callable[[Replica, int], None] | None = None,
    failed: Callable[[Replica, int, str], None] | None = None,
) -> tuple[T, Replica, int]:
    """Run ``attempt(replica, n)`` until it succeeds, each retry on a replica not tried yet.

    Replicas are picked round-robin from ``pool`` (avoiding ones cooling down after a failure);
    once every replica had its chance the round starts over. A gRPC error with a retryable code
    (or :class:`IncompleteUnit`) marks the replica failed and, after ``policy``'s backoff, tries
    again; anything else propagates. Returns (result, replica, attempt number); raises
    :class:`CallFailed` when the error is not retryable or the attempts ran out. ``started`` and
    ``failed`` observe each attempt (the jobs' event log).
    """
    tried: set[str] = set()
    for n in range(1, policy.max_attempts + 1):
        replica = pool.pick(exclude=tried)
        tried.add(replica.address)
        if len(tried) == len(pool):
            tried.clear()  # every replica had its chance: start over rather than give up
        if started is not None:
            started(replica, n)
        try:
            result = await attempt(replica, n)
        except (grpc.aio.AioRpcError, IncompleteUnit) as err:
            pool.mark(replica, False)
            what = describe(err)
            if failed is not None:
                failed(replica, n, what)
            code = err.code() if isinstance(err, grpc.aio.AioRpcError) else None
            retryable = policy.is_retryable(err)
            if not retryable or n == policy.max_attempts:
                raise CallFailed(what, replica=replica.address, attempts=n, retryable=retryable, code=code) from None
            delay = policy.delay_s(n, rng)
            log.warning("call on %s failed (%s); retrying on another replica in %.2fs", replica.address, what, delay)
            await asyncio.sleep(delay)
            continue
        pool.mark(replica, True)
        return result, replica, n
    raise AssertionError("unreachable")

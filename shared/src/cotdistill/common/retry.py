"""When a failed call to a replica is tried again (on another one), and how long to wait first.

The sampling and scoring jobs retry a failed work unit on another teacher replica; the trainer's
on-policy scoring client retries a failed Score call the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import grpc

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

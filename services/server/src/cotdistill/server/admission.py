"""Admission control: at most ``max_concurrent`` completions run, at most ``max_queue`` wait.

A request that finds the queue full is refused at once with 429 and a ``Retry-After`` estimated
from recent latencies, instead of piling up until everything times out: memory stays bounded and
clients back off. Waiters are served first come, first served; a request counts ``n x prompts``
units, one per completion it asks for.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cotdistill.server.errors import APIError


class Overloaded(APIError):
    """429: the queue is full."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            429,
            f"The server is at capacity; retry after {retry_after_s} s.",
            "rate_limit_error",
            code="server_overloaded",
            headers={"Retry-After": str(retry_after_s)},
        )


class Admission:
    """A FIFO, weighted semaphore with a bounded wait queue (single event loop)."""

    def __init__(self, max_concurrent: int, max_queue: int) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.running = 0
        self.waiting = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._latency_ema_s = 1.0

    def observe_latency(self, seconds: float) -> None:
        """Feed finished requests' latencies; Retry-After is estimated from them."""
        self._latency_ema_s = 0.9 * self._latency_ema_s + 0.1 * seconds

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: queue ahead / capacity x typical latency."""
        rounds = (self.waiting + self.running) / self.max_concurrent
        return max(1, min(60, math.ceil(rounds * self._latency_ema_s)))

    @asynccontextmanager
    async def slot(self, units: int = 1) -> AsyncIterator[None]:
        """Hold ``units`` of capacity for the body of the ``async with``; 429 when the queue is full."""
        if self.running + units <= self.max_concurrent and not self._waiters:
            self.running += units
        else:
            if self.waiting + units > self.max_queue:
                raise Overloaded(self.retry_after_s())
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (units, future)
            self._waiters.append(entry)
            self.waiting += units
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self.running -= units  # granted just as we were cancelled: give it back
                    self._wake()
                elif entry in self._waiters:  # else _wake already dropped it and its units
                    self._waiters.remove(entry)
                    self.waiting -= units
                raise
        try:
            yield
        finally:
            self.running -= units
            self._wake()

    def _wake(self) -> None:
        while self._waiters and self.running + self._waiters[0][0] <= self.max_concurrent:
            units, future = self._waiters.popleft()
            self.waiting -= units
            if future.done():  # cancelled while queued
                continue
            self.running += units
            future.set_result(None)

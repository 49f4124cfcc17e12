"""Admission control: capacity, bounded FIFO queue, 429 with Retry-After, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from cotdistill.server.admission import Admission, Overloaded


async def test_capacity_then_queue_then_429() -> None:
    adm = Admission(max_concurrent=2, max_queue=1)
    release = asyncio.Event()
    order: list[int] = []

    async def hold(i: int) -> None:
        async with adm.slot():
            order.append(i)
            await release.wait()

    running = [asyncio.create_task(hold(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert adm.running == 2 and adm.waiting == 1 and order == [0, 1]
    with pytest.raises(Overloaded) as refused:
        async with adm.slot():
            pass
    assert refused.value.status == 429 and int(refused.value.headers["Retry-After"]) >= 1
    release.set()
    await asyncio.gather(*running)
    assert order == [0, 1, 2] and adm.running == 0 and adm.waiting == 0


async def test_weighted_units_and_fifo_order() -> None:
    adm = Admission(max_concurrent=4, max_queue=8)
    gate = asyncio.Event()
    got: list[str] = []

    async def take(name: str, units: int) -> None:
        async with adm.slot(units):
            got.append(name)
            await gate.wait()

    first = asyncio.create_task(take("big", 3))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(take("two", 2)), asyncio.create_task(take("one", 1))]
    await asyncio.sleep(0.01)
    # "one" would fit (3 + 1 <= 4) but must not overtake "two": first come, first served.
    assert got == ["big"] and adm.waiting == 3
    gate.set()
    await asyncio.gather(first, *waiting)
    assert got == ["big", "two", "one"]


async def test_cancelled_waiter_gives_its_place_back() -> None:
    adm = Admission(max_concurrent=1, max_queue=1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with adm.slot():
            await gate.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    assert adm.waiting == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert adm.waiting == 0
    gate.set()
    await holder
    assert adm.running == 0


def test_retry_after_grows_with_latency_and_queue() -> None:
    adm = Admission(max_concurrent=2, max_queue=10)
    for _ in range(50):
        adm.observe_latency(4.0)
    adm.running, adm.waiting = 2, 6
    assert 10 <= adm.retry_after_s() <= 60

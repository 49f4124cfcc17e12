"""Client helpers: targets, DNS expansion into replicas, round-robin picking, retries."""

from __future__ import annotations

import json

import grpc
import pytest

from cotdistill.common.grpc_client import (
    ReplicaPool,
    call_with_retries,
    expand_addresses,
    service_config,
    target_for,
)


def test_target_for_one_and_several_addresses() -> None:
    assert target_for("dns:///teacher:50051") == "dns:///teacher:50051"
    assert target_for(["10.0.0.1:1", "10.0.0.2:1"]) == "ipv4:10.0.0.1:1,10.0.0.2:1"
    with pytest.raises(ValueError, match="ReplicaPool"):
        target_for(["a:1", "b:1"])


def test_service_config_retries_unavailable_with_round_robin() -> None:
    config = json.loads(service_config())
    policy = config["methodConfig"][0]["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]


def test_expand_addresses_resolves_names_to_each_record() -> None:
    assert expand_addresses(["127.0.0.1:5", "dns:///127.0.0.2:6"]) == ["127.0.0.1:5", "127.0.0.2:6"]
    assert expand_addresses(["localhost:7"])[0].endswith(":7")
    with pytest.raises(ValueError, match="host:port"):
        expand_addresses(["no-port"])


async def test_pool_round_robins_and_avoids_failed_replicas() -> None:
    pool = ReplicaPool(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])
    try:
        picks = [pool.pick().address for _ in range(6)]
        assert picks == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"] * 2
        pool.mark(pool.replicas[1], ok=False)
        assert {pool.pick().address for _ in range(4)} == {"127.0.0.1:1", "127.0.0.1:3"}
        assert pool.pick(exclude={"127.0.0.1:1"}).address == "127.0.0.1:3"
        pool.mark(pool.replicas[1], ok=True)
        assert "127.0.0.1:2" in {pool.pick().address for _ in range(3)}
    finally:
        await pool.close()


class _Unavailable(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="down")


async def test_call_with_retries_retries_only_retryable_codes() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _Unavailable()
        return "ok"

    assert await call_with_retries(flaky, base_delay_s=0.001) == "ok"
    assert len(calls) == 3

    async def invalid() -> str:
        raise _Unavailable(grpc.StatusCode.INVALID_ARGUMENT)

    with pytest.raises(grpc.aio.AioRpcError):
        await call_with_retries(invalid, base_delay_s=0.001)


async def test_call_with_retries_gives_up() -> None:
    async def down() -> str:
        raise _Unavailable()

    with pytest.raises(grpc.aio.AioRpcError):
        await call_with_retries(down, attempts=2, base_delay_s=0.001)

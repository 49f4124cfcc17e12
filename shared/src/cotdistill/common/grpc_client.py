"""gRPC client helpers: channels with keepalive, retries on UNAVAILABLE, and replica pools.

Two ways to spread calls over teacher replicas:

* one channel to ``dns:///name:port`` (or several literal IPs) with gRPC's ``round_robin``
  policy: the channel itself balances, good for simple callers;
* a :class:`ReplicaPool` of one channel per replica: the caller picks the replica and can retry
  a failed unit of work on *another* replica, which the sampling job needs for exactly-once output.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


def service_config(*, round_robin: bool = True, max_attempts: int = 5) -> str:
    """gRPC service config: transparent retries of UNAVAILABLE with exponential backoff.

    gRPC retries a call only before any response message arrived, so streams are never replayed
    half-way; callers that need more (a stream cut mid-way) retry at the application level.
    """
    config: dict[str, object] = {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": max(2, min(max_attempts, 5)),
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
    if round_robin:
        config["loadBalancingConfig"] = [{"round_robin": {}}]
    return json.dumps(config)


CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.enable_retries", 1),
]


def target_for(addresses: str | Sequence[str]) -> str:
    """A gRPC target for one address, a ``dns:///`` name, or several literal IPv4 addresses.

    >>> target_for(["127.0.0.1:50051", "127.0.0.1:50052"])
    'ipv4:127.0.0.1:50051,127.0.0.1:50052'
    """
    if isinstance(addresses, str):
        return addresses
    if len(addresses) == 1:
        return addresses[0]
    hosts = [a.rsplit(":", 1)[0] for a in addresses]
    if all(_is_ipv4(h) for h in hosts):
        return "ipv4:" + ",".join(addresses)
    raise ValueError(
        "several hostnames cannot share one channel; use a ReplicaPool or one dns:/// name with several records"
    )


def open_channel(
    addresses: str | Sequence[str], *, round_robin: bool = True, transparent_retries: bool = True
) -> grpc.aio.Channel:
    """An insecure aio channel with keepalive, (optionally) retries and round-robin balancing.

    ``transparent_retries=False`` makes a call fail at once on UNAVAILABLE: right for callers that
    retry on *another* replica themselves, where gRPC's own retries would only stall on a dead one.
    """
    options: list[tuple[str, int | str]] = [
        (key, 0 if key == "grpc.enable_retries" and not transparent_retries else value)
        for key, value in CHANNEL_OPTIONS
    ]
    options.append(("grpc.service_config", service_config(round_robin=round_robin)))
    return grpc.aio.insecure_channel(target_for(addresses), options=options)


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return host.count(".") == 3


def expand_addresses(addresses: Sequence[str]) -> list[str]:
    """Resolve each ``dns:///name:port`` or ``name:port`` with several A records to ip:port entries.

    Literal addresses pass through; a name resolving to N records becomes N replicas, which is
    how a Kubernetes headless Service exposes its pods.
    """
    out: list[str] = []
    for address in addresses:
        bare = address.removeprefix("dns:///")
        host, _, port = bare.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"address {address!r} is not host:port")
        if _is_ipv4(host) or host.startswith("["):
            out.append(bare)
            continue
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        ips = sorted({str(info[4][0]) for info in infos})
        out.extend(f"{ip}:{port}" if ":" not in ip else f"[{ip}]:{port}" for ip in ips)
    return out


@dataclass
class Replica:
    """One replica's channel and health record in a pool."""

    address: str
    channel: grpc.aio.Channel
    failures: int = 0


class ReplicaPool:
    """One channel per replica, picked round-robin; a failed replica sits out a cool-down.

    The cool-down doubles with each consecutive failure (capped at ``max_cooldown_s``), then the
    replica gets work again, so a restarted pod rejoins instead of staying unused. When every
    candidate is cooling down, the one with the fewest failures is used anyway: callers never
    stall for lack of a healthy replica, they back off per call instead.
    """

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        resolve: bool = True,
        transparent_retries: bool = True,
        cooldown_s: float = 1.0,
        max_cooldown_s: float = 30.0,
    ) -> None:
        expanded = expand_addresses(addresses) if resolve else list(addresses)
        if not expanded:
            raise ValueError("a replica pool needs at least one address")
        self.replicas = [
            Replica(a, open_channel(a, round_robin=False, transparent_retries=transparent_retries)) for a in expanded
        ]
        self._cycle = itertools.cycle(range(len(self.replicas)))
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._failed_at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.replicas)

    def available(self, replica: Replica, now: float) -> bool:
        """Whether ``replica`` may get work: healthy, or its cool-down has passed."""
        if replica.failures == 0:
            return True
        wait = min(self.max_cooldown_s, self.cooldown_s * 2 ** (replica.failures - 1))
        return now - self._failed_at.get(replica.address, 0.0) >= wait

    def pick(self, exclude: set[str] | None = None) -> Replica:
        """The next available replica round-robin, not in ``exclude`` while another one is left."""
        exclude = exclude or set()
        candidates = [r for r in self.replicas if r.address not in exclude] or self.replicas
        now = time.monotonic()
        ready = [r for r in candidates if self.available(r, now)]
        if not ready:
            fewest = min(r.failures for r in candidates)
            ready = [r for r in candidates if r.failures == fewest]
        for _ in range(len(self.replicas)):
            replica = self.replicas[next(self._cycle)]
            if replica in ready:
                return replica
        return ready[0]

    def mark(self, replica: Replica, ok: bool) -> None:
        """Record a call's outcome on ``replica``."""
        replica.failures = 0 if ok else replica.failures + 1
        if not ok:
            self._failed_at[replica.address] = time.monotonic()

    async def close(self) -> None:
        await asyncio.gather(*(r.channel.close(None) for r in self.replicas))


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 4,
    base_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
    retryable: frozenset[grpc.StatusCode] = RETRYABLE,
) -> T:
    """Run ``call`` again on a retryable status, with exponential backoff and full jitter."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except grpc.aio.AioRpcError as err:
            if err.code() not in retryable or attempt == attempts:
                raise
            delay = random.uniform(0, min(max_delay_s, base_delay_s * 2 ** (attempt - 1)))
            log.warning(
                "call failed with %s (attempt %d/%d); retrying in %.2fs", err.code().name, attempt, attempts, delay
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def wait_for_ready(channel: grpc.aio.Channel, service: str = "", timeout_s: float = 30.0) -> None:
    """Poll the standard health service until it reports SERVING or ``timeout_s`` passes."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    deadline = asyncio.get_running_loop().time() + timeout_s
    last = "no answer"
    while asyncio.get_running_loop().time() < deadline:
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.aio.AioRpcError as err:
            last = err.code().name
        await asyncio.sleep(0.1)
    raise TimeoutError(f"service {service or '(server)'} not SERVING after {timeout_s}s (last: {last})")

"""Teacher replica pool of the sampling job: one channel per replica, no transparent retries.

gRPC's own retry policy (``cotdistill.common.grpc_client.service_config``) would retry a failed
unit on the *same* replica, with backoff, up to five times before the job sees the error. A dead
replica would then stall each of its units for seconds; the job retries a unit on another
replica itself, so its channels turn transparent retries off.

A replica that failed sits out a cool-down (doubling with each consecutive failure, capped),
then gets units again: a restarted pod rejoins the job instead of staying unused.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import grpc

from cotdistill.common.grpc_client import CHANNEL_OPTIONS, Replica, ReplicaPool, expand_addresses


class UnitPool(ReplicaPool):
    """A :class:`ReplicaPool` whose channels fail fast and whose failed replicas come back."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        resolve: bool = True,
        cooldown_s: float = 1.0,
        max_cooldown_s: float = 30.0,
    ) -> None:
        expanded = expand_addresses(addresses) if resolve else list(addresses)
        if not expanded:
            raise ValueError("teacher.addresses: at least one address is needed")
        options = [(key, 0 if key == "grpc.enable_retries" else value) for key, value in CHANNEL_OPTIONS]
        self.replicas = [Replica(a, grpc.aio.insecure_channel(a, options=options)) for a in expanded]
        self._cycle = itertools.cycle(range(len(self.replicas)))
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._failed_at: dict[str, float] = {}

    def mark(self, replica: Replica, ok: bool) -> None:
        super().mark(replica, ok)
        if not ok:
            self._failed_at[replica.address] = time.monotonic()

    def available(self, replica: Replica, now: float) -> bool:
        """Whether ``replica`` may get work: healthy, or its cool-down has passed."""
        if replica.failures == 0:
            return True
        wait = min(self.max_cooldown_s, self.cooldown_s * 2 ** (replica.failures - 1))
        return now - self._failed_at.get(replica.address, 0.0) >= wait

    def pick(self, exclude: set[str] | None = None) -> Replica:
        """The next available replica round-robin, not in ``exclude`` when another one is left.

        When every candidate is cooling down, the one with the fewest failures is used anyway:
        the job never stops for lack of a healthy replica, it backs off per unit instead.
        """
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


def open_pool(addresses: Sequence[str], *, cooldown_s: float = 1.0) -> UnitPool:
    """Replicas of ``addresses`` (literal host:port entries or ``dns:///`` names with several
    records, each record a replica)."""
    return UnitPool(addresses, cooldown_s=cooldown_s)

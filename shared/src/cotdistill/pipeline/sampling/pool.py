"""Teacher replica pool of the sampling job: one channel per replica, no transparent retries.

gRPC's own retry policy (``cotdistill.common.grpc_client.service_config``) would retry a failed
unit on the *same* replica, with backoff, up to five times before the job sees the error. A dead
replica would then stall each of its units for seconds; the job retries a unit on another
replica itself, so its channels turn transparent retries off.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import grpc

from cotdistill.common.grpc_client import CHANNEL_OPTIONS, Replica, ReplicaPool, expand_addresses


class UnitPool(ReplicaPool):
    """A :class:`ReplicaPool` whose channels fail fast, for callers that retry elsewhere."""

    def __init__(self, addresses: Sequence[str], *, resolve: bool = True) -> None:
        expanded = expand_addresses(addresses) if resolve else list(addresses)
        if not expanded:
            raise ValueError("teacher.addresses: at least one address is needed")
        options = [(key, 0 if key == "grpc.enable_retries" else value) for key, value in CHANNEL_OPTIONS]
        self.replicas = [Replica(a, grpc.aio.insecure_channel(a, options=options)) for a in expanded]
        self._cycle = itertools.cycle(range(len(self.replicas)))


def open_pool(addresses: Sequence[str]) -> ReplicaPool:
    """Replicas of ``addresses`` (literal host:port entries or ``dns:///`` names with several
    records, each record a replica)."""
    return UnitPool(addresses)

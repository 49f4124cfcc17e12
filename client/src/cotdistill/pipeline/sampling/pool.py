"""Teacher replica pool of the sampling job: one channel per replica, no transparent retries.

gRPC's own retry policy (``cotdistill.common.grpc_client.service_config``) would retry a failed
unit on the *same* replica, with backoff, up to five times before the job sees the error. A dead
replica would then stall each of its units for seconds; the job retries a unit on another
replica itself, so its channels turn transparent retries off. Failed replicas sit out a growing
cool-down, then rejoin (see :class:`~cotdistill.common.grpc_client.ReplicaPool`).
"""

from __future__ import annotations

from collections.abc import Sequence

from cotdistill.common.grpc_client import ReplicaPool


def open_pool(addresses: Sequence[str], *, cooldown_s: float = 1.0) -> ReplicaPool:
    """Replicas of ``addresses`` (literal host:port entries or ``dns:///`` names with several
    records, each record a replica)."""
    if not addresses:
        raise ValueError("teacher.addresses: at least one address is needed")
    return ReplicaPool(addresses, transparent_retries=False, cooldown_s=cooldown_s)

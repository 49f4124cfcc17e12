"""The sampling job (driver side): dataset x D samples over teacher replicas, exactly once.

* :mod:`.units`: idempotent work units and their ids;
* :mod:`.manifest`: ``samples/manifest.json`` and reconciliation with the shards on disk;
* :mod:`.retry`: which failures are retried, and the backoff;
* :mod:`.job`: the async runner over a :class:`~cotdistill.common.grpc_client.ReplicaPool`;
* :mod:`.progress`: the rich progress bar;
* :mod:`.stage`: the ``sample`` and ``filter`` pipeline stages.
"""

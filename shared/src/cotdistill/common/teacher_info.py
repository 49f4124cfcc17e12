"""What the teacher replicas serve (``Info``), as :class:`~cotdistill.common.samples.TeacherFacts`.

Shared by the sampling and scoring jobs (which refuse replicas serving different models) and the
trainer's on-policy scoring client (which aligns the teacher's tokens to the student's).
"""

from __future__ import annotations

import asyncio
import time

import grpc

from cotdistill.common.errors import CotdistillError, Unavailable
from cotdistill.common.grpc_client import ReplicaPool
from cotdistill.common.samples import TeacherFacts
from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc


async def fetch_teacher_info(pool: ReplicaPool, *, timeout_s: float = 60.0) -> TeacherFacts:
    """Info of every reachable replica; they must serve the same model and tokenizer.

    Waits up to ``timeout_s`` for at least one replica (a replica loading its model answers
    UNAVAILABLE). Replicas that never answer are marked failed and used last.
    """
    deadline = time.monotonic() + timeout_s
    infos: dict[str, TeacherFacts] = {}
    last_error = "no answer"
    while not infos and time.monotonic() < deadline:
        for replica in pool.replicas:
            stub = teacher_pb2_grpc.TeacherServiceStub(replica.channel)
            try:
                reply = await stub.Info(
                    teacher_pb2.InfoRequest(), timeout=min(5.0, max(0.5, deadline - time.monotonic()))
                )
                infos[replica.address] = TeacherFacts.from_info(reply)
                pool.mark(replica, True)
            except grpc.aio.AioRpcError as err:
                pool.mark(replica, False)
                last_error = f"{replica.address}: {err.code().name} {err.details()}"
        if not infos:
            await asyncio.sleep(0.25)
    if not infos:
        raise Unavailable(f"no teacher replica answered Info within {timeout_s:g}s (last: {last_error})")
    hashes = {(i.model_id, i.tokenizer.content_hash) for i in infos.values()}
    if len(hashes) > 1:
        detail = ", ".join(f"{a}: {i.model_id} ({i.tokenizer.content_hash[:12]})" for a, i in infos.items())
        raise CotdistillError(f"teacher replicas serve different models or tokenizers: {detail}")
    return next(iter(infos.values()))

"""Trainer service start-up on a real student: run accepted -> first optimizer step, local Ray.

``cotdistill serve trainer`` runs as a process with its default local Ray (started eagerly, before
the service reports SERVING); the benchmark waits for SERVING, then starts a run on
SmolLM2-135M-Instruct (full fine-tune, bf16, batch 8, 160 GSM8K examples, one worker with all the
machine's CPUs) and takes the time from the StartRun reply to the first ``step`` event of
``WatchRun`` (the first optimizer step done). The run's ``phase`` events break it down (workers
started, model loaded, data read and tokenized, first step running). A second run on the same
service shows the warm figure. The Ray worker's peak RSS (``VmHWM`` of the pid it reports) is
recorded too: that is the process the 1.5x memory goal is about when training as a service.

Baseline: the 1.3-3.8 minutes measured before this work (``../shared/notes/REAL-MODELS.md``,
on a loaded machine); the best of those, 78 s, is the baseline value.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.real_models import LoadSampler, gsm8k_jsonl, student_dir

BASELINE_S = 78.0
STEPS = 3
N_EXAMPLES = 160
_PID = re.compile(r"worker rank 0/\d+ pid (\d+)")


def _peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def one_run(address: str, spec: Any) -> dict[str, Any]:
    from cotdistill.common.grpc_client import open_channel
    from cotdistill.v1 import trainer_pb2, trainer_pb2_grpc

    async with open_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        started = time.monotonic()
        run = (await stub.StartRun(trainer_pb2.StartRunRequest(spec=spec))).run
        accepted = time.monotonic()
        phases: dict[str, float] = {}
        first_step = None
        worker_pid, peak = 0, 0.0
        call = stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id))
        async for response in call:
            event = response.event
            if worker_pid:
                peak = max(peak, _peak_rss_mib(worker_pid))
            if event.HasField("phase"):
                phases[event.phase.name] = round(event.phase.elapsed_s, 2)
            elif event.HasField("message") and (m := _PID.search(event.message)):
                worker_pid = int(m.group(1))
            elif event.HasField("step") and first_step is None:
                first_step = time.monotonic() - accepted
            elif event.HasField("state") and event.state.state in (
                trainer_pb2.RUN_STATE_SUCCEEDED,
                trainer_pb2.RUN_STATE_FAILED,
                trainer_pb2.RUN_STATE_CANCELLED,
            ):
                if event.state.state != trainer_pb2.RUN_STATE_SUCCEEDED:
                    raise RuntimeError(f"run ended {event.state.state}: {event.state.reason}")
                break
        if worker_pid:
            peak = max(peak, _peak_rss_mib(worker_pid))
    return {
        "start_run_rpc_s": round(accepted - started, 3),
        "accepted_to_first_step_s": round(first_step or float("nan"), 2),
        "phases_elapsed_s": phases,
        "worker_peak_rss_mib": round(peak, 1),
    }


def main() -> None:
    from cotdistill.pipeline import local_services
    from cotdistill.v1 import trainer_pb2

    model = student_dir()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp, LoadSampler(every_s=2) as load:
        root = Path(tmp)
        data = gsm8k_jsonl(root / "gsm8k.jsonl", N_EXAMPLES)
        env = {
            "COTDISTILL_TRAINER_ARTIFACTS_DIR": str(root / "artifacts"),
            "COTDISTILL_TRAINER_PATH_ROOTS": str(root),  # the benchmark's data lives here
            "RAY_TMPDIR": os.environ.get("RAY_TMPDIR", str(root / "ray")),
        }
        service = local_services.start("trainer", root / "logs", env)
        try:
            ready_s = asyncio.run(local_services.wait_ready(service, timeout_s=300))
            spec = trainer_pb2.RunSpec(
                name="startup",
                student=trainer_pb2.StudentSpec(model=str(model)),
                data=trainer_pb2.DataSpec(train_paths=[str(data)], format="ft_cot", max_seq_len=256, packing=True),
                hyperparameters=trainer_pb2.Hyperparameters(
                    learning_rate=5e-5, max_steps=STEPS, batch_size=8, precision=trainer_pb2.PRECISION_BF16
                ),
                scaling=trainer_pb2.ScalingSpec(num_workers=1),
            )
            cold = asyncio.run(one_run(service.address, spec))
            print("cold", cold, flush=True)
            warm = asyncio.run(one_run(service.address, spec))
            print("warm", warm, flush=True)
        finally:
            local_services.stop(service, timeout_s=60)
    write_result(
        "trainer_startup",
        title="Trainer service: run accepted -> first optimizer step, SmolLM2-135M, local Ray (first run)",
        metric="s",
        value=cold["accepted_to_first_step_s"],
        baseline_name="before this work (REAL-MODELS.md, best of 1.3-3.8 min)",
        baseline_value=BASELINE_S,
        higher_is_better=False,
        goal="<= 30 s",
        figures={
            "first_run": cold,
            "second_run": warm,
            "service_ready_s": round(ready_s, 2),
            "load_average_1m": load.summary(),
        },
    )


if __name__ == "__main__":
    main()

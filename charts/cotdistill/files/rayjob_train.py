"""RayJob entrypoint: train one recipe on this Ray cluster, the way the trainer service trains it.

KubeRay submits this as the Ray job's driver on the RayJob's head pod (the chart's
trainer.rayJobs renders the RayJob, with this file and the recipe in a ConfigMap). It starts the
trainer service on loopback, joined to this cluster (COTDISTILL_TRAINER_RAY_ADDRESS=auto, so
Ray Train's workers run on the cluster's worker pods), runs the recipe's `train` stage through
it (`cotdistill run RECIPE stages=[train]`: StartRun + WatchRun), stops the service, and exits
with the run's outcome: 0 when it succeeded. Checkpoints and the run record go under
--artifacts-dir, the shared artifacts volume, where the trainer Deployment keeps its runs too; the
stage reads the run's samples from the recipe's output_dir there and records the run in
<output_dir>/<name>/training/run.json, where the evaluate stage of a later pipeline Job finds
the checkpoints.

    python rayjob_train.py RECIPE.yaml --artifacts-dir DIR [key.path=value ...]

Only the trainer service's public interfaces are used (`cotdistill serve trainer`, gRPC), so the
entrypoint needs nothing beyond the trainer image.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cotdistill.pipeline import local_services

TRAINER_READY_S = 600.0  # joining a cluster whose workers are still being scheduled takes a while


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, help="the recipe YAML")
    parser.add_argument("--artifacts-dir", required=True, help="the shared artifacts volume (run records, checkpoints)")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides of the recipe")
    args = parser.parse_intermixed_args(argv)  # overrides may follow --artifacts-dir
    if not args.recipe.is_file():
        print(f"rayjob: recipe not found: {args.recipe}", file=sys.stderr)
        return 2
    env = {
        "COTDISTILL_TRAINER_ARTIFACTS_DIR": args.artifacts_dir,
        # Join the cluster this job runs on (set it to '' for a local Ray, as the tests do).
        "COTDISTILL_TRAINER_RAY_ADDRESS": os.environ.get("COTDISTILL_TRAINER_RAY_ADDRESS", "auto"),
        "COTDISTILL_TRAINER_RAY_START": "eager",
    }
    logs = Path(tempfile.mkdtemp(prefix="rayjob-trainer-"))
    trainer = local_services.start("trainer", logs, env)
    code = 1
    try:
        waited = asyncio.run(local_services.wait_ready(trainer, timeout_s=TRAINER_READY_S))
        print(f"rayjob: trainer service ready at {trainer.address} after {waited:.1f}s", flush=True)
        exe = Path(sys.executable).parent / "cotdistill"
        pinned = ["stages=[train]", f"training.trainer_address={trainer.address}"]
        command = [str(exe), "run", str(args.recipe), *args.overrides, *pinned]
        code = subprocess.run(command, check=False).returncode
    except (RuntimeError, TimeoutError) as err:
        print(f"rayjob: the trainer service did not start: {err}", file=sys.stderr)
    finally:
        stopped = local_services.stop(trainer, timeout_s=120)
        if code != 0 or stopped != 0:
            tail = trainer.log_path.read_text(errors="replace")[-4000:]
            print(f"rayjob: trainer service log (exit {stopped}):\n{tail}", file=sys.stderr)
    print(f"rayjob: training {'succeeded' if code == 0 else f'failed (exit {code})'}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

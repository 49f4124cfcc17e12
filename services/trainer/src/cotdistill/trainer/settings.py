"""Trainer process settings, from ``COTDISTILL_TRAINER_*`` environment variables.

Process settings say where the service keeps its records and which Ray runtime it trains on;
what to train (student, data, objective) arrives per run in ``StartRun``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from cotdistill.common.settings import CallerPathSettings


class TrainerSettings(CallerPathSettings):
    """Settings of the trainer service."""

    model_config = SettingsConfigDict(env_prefix="COTDISTILL_TRAINER_", extra="forbid", validate_default=True)

    port: int = Field(50052, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="Prometheus /metrics port.")

    ray_address: str = Field(
        "",
        description=(
            "Ray runtime to train on: '' starts a local Ray inside the service process; 'auto' joins the "
            "cluster of this node; 'ray://head:10001' connects to a remote cluster (KubeRay head service)."
        ),
    )
    ray_start: Literal["lazy", "eager"] = Field(
        "eager",
        description=(
            "When to start or join Ray: 'lazy' on the first run (a service that never trains never starts "
            "Ray), 'eager' at start-up, before the service reports SERVING. Ray's start-up can hold the "
            "whole process while it waits for its daemons (seconds; more on a busy machine), which with "
            "'lazy' stalls RPCs for that long: use 'eager' for a dedicated trainer deployment."
        ),
    )
    ray_num_cpus: int | None = Field(
        None, ge=1, le=4096, description="CPUs a local Ray may use; unset means all of the machine's."
    )
    ray_object_store_mb: int = Field(
        256, ge=64, le=1 << 20, description="Object store size of a local Ray, MiB (runs pass little data)."
    )
    max_concurrent_runs: int = Field(
        1, ge=1, le=64, description="Runs training at once; later runs wait in PENDING for a slot."
    )
    default_num_workers: int = Field(1, ge=1, le=1024, description="Ray Train workers when a spec leaves it 0.")
    default_cpus_per_worker: float | None = Field(
        None,
        gt=0,
        le=1024,
        description=(
            "CPUs per worker when a spec leaves it 0; unset means the local Ray runtime's CPUs shared among the "
            "run's workers (each worker trains with that many torch threads), or 1 on a cluster."
        ),
    )
    gpu_fallback_to_cpu: bool = Field(
        True,
        description=(
            "A run asking for GPUs on a Ray runtime without any trains on CPU (gloo) with a notice instead "
            "of waiting for GPUs that never come."
        ),
    )
    cancel_grace_s: float = Field(
        60.0, gt=0, le=3600, description="How long CancelRun waits for the workers to stop (at their next micro-batch)."
    )

    @model_validator(mode="after")
    def _artifacts_dir_is_local(self) -> Self:
        # Run records live in SQLite, which needs a POSIX file system with working locks.
        if "://" in self.artifacts_dir and not self.artifacts_dir.startswith("file://"):
            raise ValueError(
                f"{self.env_name('artifacts_dir')}={self.artifacts_dir!r}: the trainer keeps its run records in "
                "SQLite and needs a local (or mounted shared) directory, not an object-store URI"
            )
        return self

    @property
    def artifacts_path(self) -> Path:
        """The artifact directory as an absolute local path (``file://`` stripped)."""
        return Path(self.artifacts_dir.removeprefix("file://")).resolve()

"""Evaluator process settings, from ``COTDISTILL_EVALUATOR_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cotdistill.common.settings import CallerPathSettings


class EvaluatorSettings(CallerPathSettings):
    """Settings of the evaluator service.

    ``artifacts_dir`` holds the result cache (``eval-cache/<key>/``) and is where results go
    when a request names no ``output_dir``.
    """

    model_config = SettingsConfigDict(env_prefix="COTDISTILL_EVALUATOR_", extra="forbid", validate_default=True)

    port: int = Field(50053, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(9103, ge=0, le=65535, description="Prometheus /metrics port.")
    device: str = Field("cpu", description="torch device for checkpoints: cpu, cuda, cuda:1, ...")
    torch_threads: int = Field(0, ge=0, le=1024, description="torch CPU threads; 0 keeps torch's default.")
    max_examples: int = Field(
        200_000, ge=1, description="Most questions x formats one Evaluate call may ask for (bounds memory and time)."
    )

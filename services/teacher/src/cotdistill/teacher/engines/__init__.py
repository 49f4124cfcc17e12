"""Engine backends and the factory that picks one from the settings."""

from __future__ import annotations

import importlib.util
import logging

from cotdistill.common.errors import ConfigError
from cotdistill.teacher.engine import Engine
from cotdistill.teacher.settings import TeacherSettings

log = logging.getLogger(__name__)


def resolve_backend(settings: TeacherSettings) -> str:
    """``auto`` means vLLM when a CUDA GPU is visible and vLLM is installed, else transformers."""
    if settings.backend != "auto":
        return settings.backend
    try:
        import torch

        has_gpu = bool(torch.cuda.is_available())
    except Exception:
        has_gpu = False
    has_vllm = importlib.util.find_spec("vllm") is not None
    return "vllm" if has_gpu and has_vllm else "transformers"


def create_engine(settings: TeacherSettings) -> Engine:
    """Build (not start) the engine the settings ask for; errors name the setting."""
    backend = resolve_backend(settings)
    if backend != "openai" and not settings.model:
        raise ConfigError("set it to a model directory", key=settings.env_name("model"))
    log.info("teacher backend: %s (asked for %s)", backend, settings.backend)
    if backend == "transformers":
        from cotdistill.teacher.engines.transformers_engine import TransformersEngine

        return TransformersEngine(
            settings.model,
            device=settings.device,
            dtype=settings.dtype,
            max_batch_sequences=settings.max_batch_sequences,
            max_model_len=settings.max_model_len,
            max_top_k=settings.max_top_k,
            num_threads=settings.num_threads,
        )
    if backend == "vllm":
        from cotdistill.teacher.engines.vllm_engine import VllmEngine

        return VllmEngine.from_settings(settings)
    if backend == "openai":
        from cotdistill.teacher.engines.openai_engine import OpenAIEngine

        return OpenAIEngine.from_settings(settings)
    raise ConfigError(f"unknown backend {backend!r}", key=settings.env_name("backend"))

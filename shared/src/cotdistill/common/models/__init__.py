"""Real models as artifacts: a pinned registry, a models cache, and one way to resolve a model reference.

``resolve_model(ref)`` is what every service and recipe calls wherever it takes a model: a registry
name, a directory, a GGUF file, a hub id or a URI all become a normal Hugging Face directory.
"""

from cotdistill.common.models.cache import ENV_VAR, default_models_cache, verify
from cotdistill.common.models.info import chat_template_of, model_info
from cotdistill.common.models.pull import check_hf_dir, pull_model, resolve_model
from cotdistill.common.models.registry import ModelEntry, get_entry, is_registry_name, registry

__all__ = [
    "ENV_VAR",
    "ModelEntry",
    "chat_template_of",
    "check_hf_dir",
    "default_models_cache",
    "get_entry",
    "is_registry_name",
    "model_info",
    "pull_model",
    "registry",
    "resolve_model",
    "verify",
]

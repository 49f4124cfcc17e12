"""Paths named in requests stay under the service's configured roots (cotdistill.common.path_policy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotdistill.common.errors import InvalidArgument, PermissionDenied
from cotdistill.common.models import default_models_cache
from cotdistill.common.path_policy import PathRoots
from cotdistill.evaluator.settings import EvaluatorSettings
from cotdistill.trainer.settings import TrainerSettings

SETTING = "COTDISTILL_TEST_PATH_ROOTS"


@pytest.fixture
def roots(tmp_path: Path) -> PathRoots:
    (tmp_path / "root" / "models" / "m").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return PathRoots.of([tmp_path / "root", "", "s3://bucket/runs/"], SETTING)


def test_paths_under_a_root_resolve(roots: PathRoots, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert roots.confine(str(root / "models" / "m"), "f") == str(root / "models" / "m")
    assert roots.confine(str(root / "models" / ".." / "new"), "f") == str(root / "new")  # need not exist
    assert roots.confine(str(root), "f") == str(root)
    assert roots.confine(f"file://{root}/models", "f") == str(root / "models")
    (root / "inner-link").symlink_to(root / "models")
    assert roots.confine(str(root / "inner-link" / "m"), "f") == str(root / "models" / "m")


@pytest.mark.parametrize(
    "value",
    ["/etc", "/etc/passwd", "/proc/self/environ", "{root}/../outside", "{root}/models/../../outside", "{root}x"],
)
def test_paths_outside_every_root_are_denied_naming_the_field(roots: PathRoots, tmp_path: Path, value: str) -> None:
    path = value.format(root=tmp_path / "root")
    with pytest.raises(PermissionDenied) as err:
        roots.confine(path, "data.train_paths[2]")
    assert err.value.field == "data.train_paths[2]"
    assert str(err.value).startswith(f"data.train_paths[2]: {path} is outside the directories")
    assert SETTING in str(err.value)


def test_links_and_relative_paths_cannot_escape(
    roots: PathRoots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    (root / "escape").symlink_to("/etc")
    with pytest.raises(PermissionDenied):
        roots.confine(str(root / "escape" / "passwd"), "f")
    monkeypatch.chdir(root / "models")
    assert roots.confine("m", "f") == str(root / "models" / "m")  # against the working directory
    with pytest.raises(PermissionDenied):
        roots.confine("../../outside", "f")


def test_object_store_roots_allow_their_prefix_only(roots: PathRoots) -> None:
    assert roots.confine("s3://bucket/runs/a/eval", "output_dir") == "s3://bucket/runs/a/eval"
    for value in ("s3://bucket/other", "s3://bucket/runs/../other", "s3://bucket/runsx", "gs://bucket/runs/a"):
        with pytest.raises(PermissionDenied):
            roots.confine(value, "output_dir")


@pytest.mark.parametrize(("value", "message"), [("", "empty path"), ("  ", "empty path"), ("a\x00b", "NUL")])
def test_non_paths_are_invalid(roots: PathRoots, value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        roots.confine(value, "f")


def test_service_roots_default_to_its_own_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTDISTILL_MODELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COTDISTILL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COTDISTILL_EVALUATOR_PATH_ROOTS", f"{tmp_path / 'a'},{tmp_path / 'b'}")
    settings = EvaluatorSettings(artifacts_dir=str(tmp_path / "artifacts"))
    assert settings.read_roots().roots == tuple(str(tmp_path / d) for d in ("artifacts", "cache", "data", "a", "b"))
    assert settings.write_roots().roots == tuple(str(tmp_path / d) for d in ("artifacts", "a", "b"))
    assert settings.read_roots().setting == "COTDISTILL_EVALUATOR_PATH_ROOTS"
    monkeypatch.delenv("COTDISTILL_MODELS_CACHE")
    home_cache = default_models_cache().resolve()
    trainer = TrainerSettings(artifacts_dir=str(tmp_path / "t"), models_dir="", path_roots=[])
    assert str(home_cache) not in trainer.read_roots().roots  # an empty models_dir adds no root
    assert str(home_cache) in TrainerSettings(artifacts_dir=str(tmp_path / "t")).read_roots().roots

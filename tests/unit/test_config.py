"""Run recipes: YAML -> typed config, overrides, and errors that name the key and file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotdistill.common.config import apply_overrides, dump_config, load_config
from cotdistill.common.errors import ConfigError
from cotdistill.pipeline.run_config import RunConfig

GOOD = """\
name: demo
sampling:
  dataset: synthetic_arithmetic
  num_samples: 4
  temperature: 0.7
evaluation:
  datasets:
    - name: gsm8k
      split: test
      group: in_distribution
    - name: svamp
      group: out_of_distribution
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_valid_recipe_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(RunConfig, write(tmp_path, GOOD))
    assert config.sampling.num_samples == 4
    assert config.evaluation.datasets[1].group == "out_of_distribution"
    assert config.evaluation.datasets[1].split == "test"  # default filled in
    assert config.teacher.addresses == ["127.0.0.1:50051"]


def test_overrides_apply_after_the_file(tmp_path: Path) -> None:
    config = load_config(RunConfig, write(tmp_path, GOOD), ["sampling.num_samples=8", "teacher.addresses=[a:1, b:2]"])
    assert config.sampling.num_samples == 8
    assert config.teacher.addresses == ["a:1", "b:2"]


def test_out_of_range_value_names_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("temperature: 0.7", "temperature: 99"))
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, path)
    assert f"{path}:5: sampling.temperature:" in str(err.value)
    assert "less than or equal to 10" in str(err.value)


def test_unknown_key_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  num_samples: 4", "  num_sample: 4"))
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, path)
    assert f"{path}:4: sampling.num_sample: Extra inputs are not permitted" in str(err.value)


def test_error_in_a_list_item_points_at_the_item(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("group: out_of_distribution", "group: sideways"))
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, path)
    assert f"{path}:12: evaluation.datasets.1.group:" in str(err.value)


def test_bad_override_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, write(tmp_path, GOOD), ["sampling.top_k_logprobs=50"])
    assert "override 'sampling.top_k_logprobs=50': sampling.top_k_logprobs:" in str(err.value)


def test_override_without_equals_sign() -> None:
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        apply_overrides({}, ["sampling.num_samples"])


def test_override_through_a_scalar_is_refused() -> None:
    with pytest.raises(ConfigError, match="name is not a mapping"):
        apply_overrides({"name": "x"}, ["name.first=y"])


def test_invalid_yaml_gives_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\nsampling: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, path)
    assert str(path) in str(err.value) and "invalid YAML" in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(RunConfig, tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(RunConfig, write(tmp_path, "- a\n- b\n"))


def test_run_name_must_be_a_directory_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r":1: name:"):
        load_config(RunConfig, write(tmp_path, "name: ../escape\n"))


def test_dump_round_trips(tmp_path: Path) -> None:
    config = load_config(RunConfig, write(tmp_path, GOOD))
    again = load_config(RunConfig, write(tmp_path, dump_config(config)))
    assert again == config


def test_every_shipped_recipe_validates(repo_root: Path) -> None:
    recipes = sorted((repo_root / "configs").glob("*.yaml"))
    assert recipes, "configs/ holds no recipes"
    for recipe in recipes:
        load_config(RunConfig, recipe)


def test_project_errors_survive_pickling() -> None:
    import pickle

    from cotdistill.common.errors import InvalidArgument

    err = pickle.loads(pickle.dumps(ConfigError("bad", key="a.b", source="f.yaml:3")))
    assert (str(err), err.key, err.source) == ("f.yaml:3: a.b: bad", "a.b", "f.yaml:3")
    inv = pickle.loads(pickle.dumps(InvalidArgument("student.model", "missing")))
    assert (str(inv), inv.field) == ("student.model: missing", "student.model")

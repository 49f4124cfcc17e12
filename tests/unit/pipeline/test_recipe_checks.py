"""`cotdistill config validate` checks what a recipe names: datasets, formats, models, files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotdistill.common.config import load_located_config
from cotdistill.pipeline.recipe_checks import check_recipe
from cotdistill.pipeline.run_config import RunConfig

RECIPE = """\
name: r
sampling:
  dataset: gsm8k
evaluation:
  datasets:
    - {name: svamp, split: test}
"""


def problems(tmp_path: Path, *overrides: str, paths: bool = True, text: str = RECIPE) -> list[str]:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text + f"output_dir: {tmp_path / 'runs'}\n")
    config, where = load_located_config(RunConfig, recipe, overrides)
    return [f"{where(p.key)}: {p.dotted}: {p.message}" for p in check_recipe(config, paths=paths)]


def test_a_recipe_whose_names_resolve_passes(tmp_path: Path) -> None:
    model = tmp_path / "student"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert problems(tmp_path, f"training.student.model={model}", "training.student.model=smollm2-135m-instruct") == []
    assert problems(tmp_path, f"training.student.model={model}") == []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sampling.dataset=gsm9k", "sampling.dataset: unknown dataset 'gsm9k' (did you mean 'gsm8k'?)"),
        ("sampling.split=tset", "sampling.split: dataset 'gsm8k' has no split 'tset' (did you mean 'test'?)"),
        ("sampling.prompt_format=zero_shot_cto", "unknown format 'zero_shot_cto' (did you mean 'zero_shot_cot'?)"),
        ("training.data.format=ft_cto", "training.data.format: unknown format 'ft_cto' (did you mean 'ft_cot'?)"),
        ("training.student.model=qwen2.5-coder-0.5b", "unknown model 'qwen2.5-coder-0.5b' (did you mean "
         "'qwen2.5-coder-0.5b-instruct'?)"),
        ("training.student.model=/no/such/model",
         "training.student.model: no model directory (config.json) at /no/such/model"),
        ("training.data.train_paths=[/no/such/shard.parquet]",
         "training.data.train_paths[0]: no such file or directory"),
        ("evaluation.checkpoints=[/no/such/step-1]", "evaluation.checkpoints[0]: no model directory (config.json)"),
        ("evaluation.checkpoints=[smollm2-135m]", "checkpoints[0]: unknown model 'smollm2-135m' (did you mean"),
        ("training.student.model=/no/model.gguf",
         "training.student.model: no such GGUF file on this machine: /no/model.gguf"),
        ("evaluation.generic_set=/no/bbh.json", "evaluation.generic_set: no such file or directory"),
    ],
)  # fmt: skip
def test_each_unresolved_reference_is_named_with_a_suggestion(tmp_path: Path, override: str, expected: str) -> None:
    found = problems(tmp_path, override)
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith((str(tmp_path / "r.yaml"), f"override {override!r}"))


def test_evaluation_datasets_name_the_file_line_and_index(tmp_path: Path) -> None:
    text = RECIPE.replace("split: test", "split: tset")
    found = problems(tmp_path, "sampling.dataset=gsm9k", paths=False, text=text)
    assert found[0].startswith("override 'sampling.dataset=gsm9k': sampling.dataset: unknown dataset")
    assert found[1].startswith(f"{tmp_path / 'r.yaml'}:6: evaluation.datasets[0].split: dataset 'svamp' has no split")
    many = problems(tmp_path, "evaluation.datasets=[{name: svamp}, {name: svmap}, {name: ./bbh.json}]")
    assert "evaluation.datasets[1].name: unknown dataset 'svmap' (did you mean 'svamp'?)" in many[0]
    assert "evaluation.datasets[2].name: no such file or directory on this machine: ./bbh.json" in many[1]


def test_files_are_skipped_with_no_paths_and_inside_the_run_directory(tmp_path: Path) -> None:
    assert problems(tmp_path, "training.student.model=/no/such/model", paths=False) == []
    own = tmp_path / "runs" / "r" / "train"  # written by the run's filter stage, later
    assert problems(tmp_path, f"training.data.train_paths=[{own}]") == []
    assert problems(tmp_path, "training.student.model=no-such-model", paths=False)  # names are still checked

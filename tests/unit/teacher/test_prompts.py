"""Dataset glue: record ids render with the named format; answers are extracted per dataset."""

from __future__ import annotations

import pytest

from cotdistill.common.errors import InvalidArgument
from cotdistill.common.tasks import load_dataset, render_answer_prompt, render_teacher_prompt
from cotdistill.teacher.prompts import DatasetPrompts


def test_render_trigger_and_extract_match_the_tasks_module() -> None:
    example = load_dataset("synthetic_arithmetic", "train", limit=1)[0]
    prompts = DatasetPrompts("synthetic_arithmetic", "train", "zero_shot_cot")
    rendered = prompts.render([(3, example.id)])[3]
    assert rendered == render_teacher_prompt("zero_shot_cot", example)
    assert rendered + " R." + prompts.trigger() == render_answer_prompt(example, rendered, " R.")
    assert prompts.extract(" 24.", after_trigger=True) == "24"
    assert prompts.extract("so 3 + 4 = 7. The answer is 7.", after_trigger=False) == "7"


@pytest.mark.parametrize(
    ("args", "field"),
    [(("nope",), "dataset"), (("synthetic_arithmetic", "nosplit"), "split")],
)
def test_unknown_names_name_the_field(args: tuple[str, ...], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        DatasetPrompts(*args)
    assert info.value.field == field


def test_unknown_record_and_format() -> None:
    prompts = DatasetPrompts("synthetic_arithmetic", "train", "zero_shot_cot")
    with pytest.raises(InvalidArgument, match=r"^prompts\[1\]\.record_id"):
        prompts.render([(1, "missing")])
    example = load_dataset("synthetic_arithmetic", "train", limit=1)[0]
    with pytest.raises(InvalidArgument, match="^prompt_format"):
        DatasetPrompts("synthetic_arithmetic", "train", "no_format").render([(0, example.id)])

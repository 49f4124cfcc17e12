"""Teacher prompts as conversations, and the student chat template that renders the training format."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cotdistill.common import tasks
from cotdistill.common.errors import InvalidArgument
from cotdistill.common.tasks.student_chat import (
    ORIGINAL_TEMPLATE,
    install_student_template,
    read_student_format,
    student_chat_template,
    write_student_format,
)


@pytest.fixture(scope="module")
def example(shared_data: Path) -> tasks.Example:
    return tasks.load_dataset("multiarith", "train", limit=1)[0]


def test_zero_shot_cot_opens_the_assistant_turn_with_the_trigger(example: tasks.Example) -> None:
    chat = tasks.teacher_chat_prompt("zero_shot_cot", example, system="Be brief.")
    assert chat.messages == (("system", "Be brief."), ("user", example.question))
    assert chat.prefix == "Let's think step by step."
    answer = tasks.teacher_chat_prompt("answer_only", example)
    assert answer.prefix == "The answer (arabic numerals) is"


@pytest.mark.parametrize(
    ("fmt", "shots", "prefix"),
    [
        ("few_shot_cot", 8, ""),
        ("fu_complex", 8, "Let's think step by step\n"),
        ("fu_simple", 4, "Let's think step by step\n"),
    ],
)
def test_few_shot_formats_become_earlier_turns(example: tasks.Example, fmt: str, shots: int, prefix: str) -> None:
    chat = tasks.teacher_chat_prompt(fmt, example)
    roles = [role for role, _ in chat.messages]
    assert roles == ["user", "assistant"] * shots + ["user"]
    assert chat.messages[-1] == ("user", example.question) and chat.prefix == prefix
    for role, content in chat.messages[:-1]:
        assert content.strip() and not content.startswith(("Q: ", "Question: ", "A: "))
        if role == "assistant":
            assert "The answer is" in content


def _tokenizer(directory: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)


def test_render_chat_keeps_the_prefix_whitespace(real_tokenizers: dict[str, Path]) -> None:
    from cotdistill.teacher.tokenizer_info import render_chat

    tok = _tokenizer(real_tokenizers["qwen2.5-coder-0.5b-instruct"])
    text = render_chat(tok, [{"role": "user", "content": "What is 2 + 3?"}], "Let's think step by step\n")
    assert text is not None
    assert text.endswith("<|im_start|>assistant\nLet's think step by step\n"), text[-80:]
    fresh = render_chat(tok, [{"role": "user", "content": "What is 2 + 3?"}], "")
    assert fresh is not None and fresh.endswith("<|im_start|>assistant\n")
    assert render_chat(_tokenizer(real_tokenizers["gemma-3-270m"]), [{"role": "user", "content": "x"}], "") is None


STUDENT_FORMATS = ["ft_cot", "answer_only", "fu_zs_cot", "fu_zs_answer", "fu_ic_cot", "fu_ic_answer", "flan_cot_0"]


@pytest.mark.parametrize("fmt", STUDENT_FORMATS)
def test_student_template_renders_exactly_the_training_prompt(
    fmt: str, tiny_models: dict[str, Path], shared_data: Path
) -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = ImmutableSandboxedEnvironment().from_string(student_chat_template(fmt, dataset="multiarith"))
    question = 'Tom has 3 apples, "gives" 1 away\n{{ not jinja }} and 50% \\ left?'
    rendered = template.render(
        messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": question}], bos_token="<s>"
    )
    assert rendered == tasks.student_prompt(fmt, question, dataset="multiarith")


@settings(max_examples=40, deadline=None)
@given(question=st.text(min_size=1, max_size=60))
def test_student_template_is_verbatim_for_any_question(question: str) -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = ImmutableSandboxedEnvironment().from_string(student_chat_template("ft_cot"))
    assert template.render(messages=[{"role": "user", "content": question}]) == f"{question} ###"


def test_installed_template_keeps_the_original_and_adds_bos_where_training_did(
    real_tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    smol = _tokenizer(real_tokenizers["smollm2-135m-instruct"])
    own = smol.chat_template  # type: ignore[attr-defined]
    tok = copy.copy(smol)
    install_student_template(tok, "ft_cot")
    tok.save_pretrained(tmp_path)  # type: ignore[attr-defined]
    write_student_format(tmp_path, "ft_cot")
    back = AutoTokenizer.from_pretrained(tmp_path)
    turn = [{"role": "user", "content": "What is 2 + 3?"}]
    assert back.apply_chat_template(turn, tokenize=False) == "What is 2 + 3? ###"
    original = back.apply_chat_template(turn, tokenize=False, chat_template=ORIGINAL_TEMPLATE)
    assert original == smol.apply_chat_template(turn, tokenize=False)  # type: ignore[attr-defined]
    assert own and read_student_format(tmp_path) == {"format": "ft_cot", "dataset": "", "stop": ["END"]}

    gemma = copy.copy(_tokenizer(real_tokenizers["gemma-3-270m"]))  # adds <bos> to plain text
    install_student_template(gemma, "ft_cot")
    text = gemma.apply_chat_template(turn, tokenize=False)  # type: ignore[attr-defined]
    assert text == "<bos>What is 2 + 3? ###"
    trained = gemma("What is 2 + 3? ###", add_special_tokens=True)["input_ids"]  # type: ignore[operator]
    assert gemma(text, add_special_tokens=False)["input_ids"] == trained  # type: ignore[operator]


def test_a_format_without_one_question_slot_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import cotdistill.common.tasks.student_chat as module

    monkeypatch.setattr(module, "student_prompt", lambda fmt, q, **_: f"{q} and again {q}")
    with pytest.raises(InvalidArgument, match="does not place the question once"):
        student_chat_template("ft_cot")


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
@pytest.mark.parametrize("fmt", ["zero_shot_cot", "few_shot_cot", "fu_complex"])
def test_the_question_is_read_back_from_a_rendered_teacher_prompt(
    real_tokenizers: dict[str, Path], example: tasks.Example, model: str, fmt: str
) -> None:
    from cotdistill.common.chat import chat_template, last_user_message, render_chat

    tok = _tokenizer(real_tokenizers[model])
    for system in (None, "Be brief."):
        chat = tasks.teacher_chat_prompt(fmt, example, system=system)
        rendered = render_chat(tok, chat.as_dicts(), chat.prefix)
        assert rendered is not None
        assert last_user_message(rendered, chat_template(tok)) == example.question


def test_user_turn_markers_of_a_plain_template_and_of_none() -> None:
    from cotdistill.common.chat import last_user_message, user_turn_markers

    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]"
    assert user_turn_markers(template) == ("[user] ", "\n[assistant]")
    assert last_user_message("[user] a\n[assistant] b\n[user] two\nlines\n[assistant]go", template) == "two\nlines"
    assert last_user_message("Q: no markers here\nA:", template) is None
    assert user_turn_markers("no template at all") is None
    assert last_user_message("anything", "") is None

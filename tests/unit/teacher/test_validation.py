"""Request validation: each bad value is rejected with an error naming its field."""

from __future__ import annotations

import pytest

from cotdistill.common.errors import InvalidArgument
from cotdistill.teacher import validation
from cotdistill.teacher.engine import EngineInfo, TokenizerDescription
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.v1 import common_pb2, teacher_pb2

INFO = EngineInfo(model_id="m", backend="vllm", tokenizer=None, context_length=64, max_top_k=20, logprob_modes=("raw",))
SETTINGS = TeacherSettings(model="m", max_top_k=10, max_prompts=4, max_samples_per_request=100)


def params(**kw: object) -> teacher_pb2.SamplingParams:
    return teacher_pb2.SamplingParams(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"top_k_logprobs": 11}, "params.top_k_logprobs"),  # above the replica's max_top_k=10
        ({"n": 1025, "temperature": 1}, "params.n"),
        ({"n": 2, "temperature": 0}, "params.n"),  # greedy with n>1
        ({"temperature": 10.5}, "params.temperature"),
        ({"temperature": float("nan")}, "params.temperature"),
        ({"top_p": 0.0, "temperature": 1}, "params.top_p"),
        ({"top_p": 1.5, "temperature": 1}, "params.top_p"),
        ({"max_tokens": 65}, "params.max_tokens"),
        ({"stop": ["x"] * 17}, "params.stop"),
        ({"stop": ["a", ""]}, "params.stop[1]"),
        ({"logprob_mode": common_pb2.LOGPROB_MODE_PROCESSED, "temperature": 1}, "params.logprob_mode"),
    ],
)
def test_bad_sampling_params_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validation.sampling_options(params(**kwargs), INFO, SETTINGS)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_defaults_fill_in() -> None:
    options = validation.sampling_options(params(temperature=0.7, seed=5), INFO, SETTINGS)
    assert options.n == 1 and options.max_tokens == 64 and options.top_p == 1.0 and options.seed == 5
    assert options.logprob_mode == "raw" and options.top_k_logprobs == 0
    assert validation.sampling_options(params(), INFO, SETTINGS).seed is None


def test_prompt_checks_name_the_prompt() -> None:
    with pytest.raises(InvalidArgument, match=r"^prompts\[1\]\.text: must not be empty"):
        validation.literal_prompt(teacher_pb2.Prompt(text=""), 1)
    with pytest.raises(InvalidArgument, match=r"^prompts\[0\]: set text, record_id or chat"):
        validation.literal_prompt(teacher_pb2.Prompt(id="x"), 0)
    with pytest.raises(InvalidArgument, match=r"^prompts\[2\]\.text: is 64 tokens, longer than the context"):
        validation.check_prompt_lengths([[1], [1] * 63, [1] * 64], 64)
    with pytest.raises(InvalidArgument, match=r"^prompts\[0\]\.record_id: is 70 tokens"):
        validation.check_prompt_lengths([[1] * 70], 64, ["prompts[0].record_id"])
    with pytest.raises(InvalidArgument, match="^prompts: at least one"):
        validation.check_prompt_count(0, "prompts", SETTINGS)
    with pytest.raises(InvalidArgument, match="^prompts: at most 4"):
        validation.check_prompt_count(5, "prompts", SETTINGS)
    with pytest.raises(InvalidArgument, match=r"^params\.n: 4 prompts x n=26"):
        validation.check_sample_budget(4, 26, SETTINGS)


def test_two_stage_needs_a_trigger_or_a_dataset() -> None:
    request = teacher_pb2.SampleRequest(two_stage=teacher_pb2.TwoStage())
    with pytest.raises(InvalidArgument, match="^two_stage.answer_trigger"):
        validation.two_stage_options(request, None)
    request.two_stage.answer_max_tokens = 300
    request.two_stage.answer_trigger = " so"
    with pytest.raises(InvalidArgument, match="^two_stage.answer_max_tokens"):
        validation.two_stage_options(request, None)
    request.two_stage.answer_max_tokens = 0
    assert validation.two_stage_options(request, None) == validation.TwoStageOptions(" so", 32)
    assert validation.two_stage_options(teacher_pb2.SampleRequest(), None) is None


def test_score_checks() -> None:
    request = teacher_pb2.ScoreRequest(items=[teacher_pb2.ScoreItem(prompt="p", completion="")])
    with pytest.raises(InvalidArgument, match=r"^items\[0\]\.completion"):
        validation.check_score_request(request, INFO, SETTINGS)
    request = teacher_pb2.ScoreRequest(items=[teacher_pb2.ScoreItem(prompt="", completion="c")])
    with pytest.raises(InvalidArgument, match=r"^items\[0\]\.prompt: may be empty only"):
        validation.check_score_request(request, INFO, SETTINGS)  # INFO has no tokenizer, so no BOS
    request = teacher_pb2.ScoreRequest(items=[teacher_pb2.ScoreItem(prompt="p", completion="c")], top_k_logprobs=12)
    with pytest.raises(InvalidArgument, match="^top_k_logprobs"):
        validation.check_score_request(request, INFO, SETTINGS)
    with pytest.raises(InvalidArgument, match=r"^items\[0\]\.completion: prompt \+ completion are 65"):
        validation.check_score_lengths([[1] * 5], [[2] * 60], 64)


SCORING_INFO = EngineInfo(
    model_id="m",
    backend="transformers",
    tokenizer=TokenizerDescription("t", 100, 100, 1, 2, None, "h"),
    context_length=64,
    max_top_k=20,
    scores_candidates=True,
)


@pytest.mark.parametrize(
    ("item", "info", "field", "message"),
    [
        ({"prompt": "p", "chat": {"messages": [{"role": "user", "content": "q"}]}, "completion": "c"},
         INFO, "items[0].prompt", "must be empty when chat is set"),
        ({"prompt": "p", "completion": "c", "completion_ids": [3]}, INFO, "items[0].completion", "must be empty"),
        ({"prompt": "p", "completion_ids": [3, 100]}, SCORING_INFO, "items[0].completion_ids", "token id 100"),
        ({"prompt": "p", "completion_ids": [3, 4], "candidate_ids": [1, 2], "candidates_per_token": 1},
         INFO, "items[0].candidate_ids", "the vllm backend of this replica cannot score given ids"),
        ({"prompt": "p", "completion": "c", "candidate_ids": [1], "candidates_per_token": 1},
         SCORING_INFO, "items[0].candidate_ids", "needs completion_ids"),
        ({"prompt": "p", "completion_ids": [3, 4], "candidate_ids": [1, 2, 3], "candidates_per_token": 2},
         SCORING_INFO, "items[0].candidate_ids", "needs len(completion_ids) * candidates_per_token = 2*2"),
        ({"prompt": "p", "completion_ids": [3], "candidate_ids": [1] * 11, "candidates_per_token": 11},
         SCORING_INFO, "items[0].candidates_per_token", "between 1 and 10"),
        ({"prompt": "p", "completion_ids": [3], "candidate_ids": [-2], "candidates_per_token": 1},
         SCORING_INFO, "items[0].candidate_ids", "token id -2 is outside [-1, 100)"),
    ],
)  # fmt: skip
def test_score_items_with_chat_ids_and_candidates_name_the_bad_field(
    item: dict[str, object], info: EngineInfo, field: str, message: str
) -> None:
    request = teacher_pb2.ScoreRequest(items=[teacher_pb2.ScoreItem(**item)])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as err:
        validation.check_score_request(request, info, SETTINGS)
    assert err.value.field == field and message in str(err.value)


def test_valid_score_items_with_chat_ids_and_candidates_pass() -> None:
    items = [
        teacher_pb2.ScoreItem(chat=teacher_pb2.ChatPrompt(messages=[teacher_pb2.ChatMessage(role="user", content="q")]),
                              completion="c"),
        teacher_pb2.ScoreItem(prompt="p", prompt_rendered=True, completion_ids=[3, 4], candidate_ids=[1, -1, 5, 6],
                              candidates_per_token=2),
    ]  # fmt: skip
    validation.check_score_request(teacher_pb2.ScoreRequest(items=items, top_k_logprobs=5), SCORING_INFO, SETTINGS)


def test_openai_backend_settings_are_required() -> None:
    with pytest.raises(ValueError, match="COTDISTILL_TEACHER_OPENAI_BASE_URL"):
        TeacherSettings(backend="openai", model="m")

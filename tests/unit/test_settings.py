"""Process settings come from COTDISTILL_<SERVICE>_* and reject placeholders at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cotdistill.common.errors import ConfigError
from cotdistill.common.settings import ServiceSettings, is_placeholder, load_settings, unknown_variable
from cotdistill.evaluator.settings import EvaluatorSettings
from cotdistill.server.settings import ServerSettings
from cotdistill.teacher.settings import TeacherSettings
from cotdistill.trainer.settings import TrainerSettings


def test_env_prefix_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTDISTILL_TEACHER_PORT", "6001")
    monkeypatch.setenv("COTDISTILL_TRAINER_PORT", "6002")
    assert TeacherSettings().port == 6001
    assert TrainerSettings().port == 6002
    assert EvaluatorSettings().port == 50053  # untouched default


def test_defaults_listen_on_loopback() -> None:
    for cls in (TeacherSettings, TrainerSettings, EvaluatorSettings):
        assert cls().host == "127.0.0.1"
    assert ServerSettings(allow_unauthenticated=True).host == "127.0.0.1"


@pytest.mark.parametrize("value", ["changeme", "CHANGE_ME", "<your model>", "${MODEL}", "xxx", "TODO"])
def test_placeholders_are_rejected_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("COTDISTILL_TEACHER_MODEL", value)
    with pytest.raises(ValidationError, match="COTDISTILL_TEACHER_MODEL"):
        TeacherSettings()


def test_out_of_range_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTDISTILL_SERVER_ALLOW_UNAUTHENTICATED", "true")
    monkeypatch.setenv("COTDISTILL_SERVER_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        ServerSettings()


def test_unknown_constructor_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        ServiceSettings(prot=1)  # type: ignore[call-arg]


def test_real_values_are_not_placeholders() -> None:
    assert not is_placeholder("/models/llama-70b")
    assert not is_placeholder("todo-list-model")


def test_describe_masks_secrets() -> None:
    class WithKey(ServiceSettings):
        api_key: str = "s3cret-value-long-enough"

    assert WithKey().describe()["api_key"] == "***"


def test_wrongly_typed_variable_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTDISTILL_TEACHER_PORT", "fifty")
    with pytest.raises(ConfigError) as err:
        load_settings(TeacherSettings)
    assert str(err.value) == (
        "COTDISTILL_TEACHER_PORT='fifty': Input should be a valid integer, unable to parse string as an integer"
    )


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTDISTILL_SERVER_API_KEYS", "short-key")
    with pytest.raises(ConfigError, match="COTDISTILL_SERVER_API_KEYS: keys must be at least 16") as err:
        load_settings(ServerSettings)
    assert "short-key" not in str(err.value)


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("COTDISTILL_TEACHER_MODLE", "COTDISTILL_TEACHER_MODLE: unknown setting; did you mean "
         "COTDISTILL_TEACHER_MODEL?"),
        ("cotdistill_teacher_max_topk", "unknown setting; did you mean COTDISTILL_TEACHER_MAX_TOP_K?"),
        ("COTDISTILL_TEACHR_MODEL", "COTDISTILL_TEACHR_MODEL: not a setting of any service; did you mean "
         "COTDISTILL_TEACHER_MODEL?"),
    ],
)  # fmt: skip
def test_misspelled_variable_is_refused_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, variable: str, message: str
) -> None:
    monkeypatch.setenv(variable, "x")
    with pytest.raises(ConfigError) as err:
        load_settings(TeacherSettings)
    assert message in str(err.value)


def test_other_services_and_project_variables_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COTDISTILL_TRAINER_PORT", "COTDISTILL_DATA_DIR", "COTDISTILL_API_KEY", "COTDISTILL_DEMO_CACHE"):
        monkeypatch.setenv(name, "1")
    # A variable that a setting names as the one holding a secret is data, not a typo.
    monkeypatch.setenv("COTDISTILL_TEACHER_OPENAI_API_KEY_ENV", "COTDISTILL_TEACHER_REMOTE_KEY")
    monkeypatch.setenv("COTDISTILL_TEACHER_REMOTE_KEY", "sk-0123456789")
    assert load_settings(TeacherSettings).openai_api_key_env == "COTDISTILL_TEACHER_REMOTE_KEY"
    assert unknown_variable(TeacherSettings, {"COTDISTILL_TEACHER_PORT": "1"}) is None


def test_service_main_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cotdistill.evaluator.__main__ import main

    monkeypatch.setenv("COTDISTILL_EVALUATOR_DEVICE_NAME", "cpu")
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "evaluator: COTDISTILL_EVALUATOR_DEVICE_NAME: unknown setting; did you mean COTDISTILL_EVALUATOR_DEVICE?\n"
    )

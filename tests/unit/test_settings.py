"""Process settings come from COTDISTILL_<SERVICE>_* and reject placeholders at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cotdistill.common.settings import ServiceSettings, is_placeholder
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

"""Unsafe auth settings stop start-up naming the variable; keys compare in constant time."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cotdistill.server.auth import ApiKeys
from cotdistill.server.settings import ServerSettings

GOOD = "k3y-0123456789abcdef"


def test_no_key_and_no_open_mode_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        ServerSettings()
    text = str(err.value)
    assert "COTDISTILL_SERVER_API_KEYS" in text and "COTDISTILL_SERVER_ALLOW_UNAUTHENTICATED" in text


@pytest.mark.parametrize("key", ["changeme", "<your-key>", "short-key"])
def test_placeholder_and_short_keys_are_refused_without_echoing_them(key: str) -> None:
    with pytest.raises(ValidationError) as err:
        ServerSettings(api_keys=[key])
    assert "COTDISTILL_SERVER_API_KEYS" in str(err.value)
    assert key not in str(err.value)  # a near-miss secret must not land in the logs


def test_keys_from_env_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTDISTILL_SERVER_API_KEYS", f"{GOOD}, {GOOD}-2")
    monkeypatch.setenv("COTDISTILL_SERVER_CORS_ORIGINS", "https://a.example,https://b.example")
    settings = ServerSettings()
    assert settings.all_api_keys() == [GOOD, f"{GOOD}-2"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert GOOD not in str(settings.describe())


def test_key_file_is_read_and_a_missing_one_is_named(tmp_path: Path) -> None:
    secret = tmp_path / "keys"
    secret.write_text(f"# comment\n{GOOD}\n\n")
    assert ServerSettings(api_key_file=str(secret)).all_api_keys() == [GOOD]
    with pytest.raises(ValidationError, match="COTDISTILL_SERVER_API_KEY_FILE"):
        ServerSettings(api_key_file=str(tmp_path / "absent"))


def test_open_mode_must_be_explicit() -> None:
    assert ServerSettings(allow_unauthenticated=True).all_api_keys() == []


def test_api_keys_accept_only_configured_keys() -> None:
    keys = ApiKeys([GOOD, f"{GOOD}-2"])
    assert keys.accepts(GOOD) and keys.accepts(f"{GOOD}-2")
    for wrong in (None, "", GOOD[:-1], GOOD + "x", GOOD.upper()):
        assert not keys.accepts(wrong)
    assert ApiKeys([]).open and ApiKeys([]).accepts(None)
    keys.replace([f"{GOOD}-3"])
    assert not keys.accepts(GOOD) and keys.accepts(f"{GOOD}-3")


def test_lora_adapters_are_name_dir_pairs_for_the_vllm_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTDISTILL_SERVER_LORA_ADAPTERS", "gsm8k=/m/a, svamp=/m/b")
    settings = ServerSettings(backend="vllm", allow_unauthenticated=True)
    assert settings.adapters() == {"gsm8k": "/m/a", "svamp": "/m/b"}
    for value, message in (
        ("gsm8k", "COTDISTILL_SERVER_LORA_ADAPTERS: 'gsm8k' is not NAME=DIR"),
        ("a=/x,a=/y", "the adapter name 'a' repeats"),
        ("cotdistill-student=/x", "an adapter is named like the served model"),
    ):
        with pytest.raises(ValidationError, match=message):
            ServerSettings(backend="vllm", allow_unauthenticated=True, lora_adapters=value)
    with pytest.raises(ValidationError, match="served by the vllm backend; set COTDISTILL_SERVER_BACKEND=vllm"):
        ServerSettings(backend="transformers", allow_unauthenticated=True, lora_adapters="a=/x")

"""Settings: strict parsing, secrets hidden, every setting documented in .env.example."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _env_names(field: str) -> list[str]:
    info = Settings.model_fields[field]
    alias = info.validation_alias
    return list(alias.choices) if alias is not None else [f"SUPPORTBOT_{field.upper()}"]  # type: ignore[union-attr]


def test_every_setting_is_documented_in_env_example() -> None:
    text = (ROOT / ".env.example").read_text()
    missing = [f for f in Settings.model_fields if not any(f"{n}=" in text for n in _env_names(f))]
    assert missing == []


def test_a_typo_in_dotenv_is_an_error(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SUPPORTBOT_CHUNK_SIZ=50\n")
    with pytest.raises(ValidationError, match="chunk_siz"):
        Settings(_env_file=env)  # type: ignore[call-arg]


def test_malformed_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTBOT_CHUNK_SIZE", "lots")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_usual_provider_names_and_secrets_stay_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("SUPPORTBOT_SLACK_ADMINS", "U1, U2")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.openai_api_key is not None and s.openai_api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(s) and "sk-very-secret" not in str(s.model_dump())
    assert s.slack_admins == ["U1", "U2"]


def test_default_database_lives_in_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path.resolve()}/supportbot.db"


def test_sources_in_order_arguments_then_environment_then_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("SUPPORTBOT_PORT=8081\nsupportbot_host=0.0.0.0\nOPENAI_API_KEY=sk-from-file\nSUPPORTBOT_TOP_K=3\n")
    monkeypatch.setenv("SUPPORTBOT_PORT", "8082")
    monkeypatch.setenv("SUPPORTBOT_TOP_K", "4")
    s = Settings(_env_file=env, top_k=5)  # type: ignore[call-arg]
    assert (s.port, s.host, s.top_k) == (8082, "0.0.0.0", 5)
    assert s.openai_api_key is not None and s.openai_api_key.get_secret_value() == "sk-from-file"
    # An alias listed first wins; names match whatever their case.
    monkeypatch.setenv("microsoftappid", "app-1")
    monkeypatch.setenv("SUPPORTBOT_MICROSOFT_APP_ID", "app-0")
    assert Settings(_env_file=None).microsoft_app_id == "app-0"  # type: ignore[call-arg]


def test_dict_settings_are_json_and_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTBOT_EXPERTS", '{"slack:C1": ["U1"]}')
    monkeypatch.setenv("SUPPORTBOT_DEFAULT_ACCESS", "public, staff")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.experts == {"slack:C1": ["U1"]} and s.default_access == ["public", "staff"]
    monkeypatch.setenv("SUPPORTBOT_EXPERTS", "slack:C1=U1")
    with pytest.raises(ValueError, match='"experts"'):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_any_unknown_line_in_dotenv_is_refused_and_unknown_environment_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPPORTBOT_NOT_A_SETTING", "1")  # the environment holds other programs' variables
    assert Settings(_env_file=None).port == 8000  # type: ignore[call-arg]
    env = tmp_path / ".env"
    env.write_text("SLACK_CLIENT_ID=123\n")
    with pytest.raises(ValidationError, match="slack_client_id"):
        Settings(_env_file=env)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="not_a_field"):
        Settings(_env_file=None, not_a_field=1)  # type: ignore[call-arg]

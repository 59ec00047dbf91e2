"""Settings: every bad NRM_* value gives one readable line naming the variable; the defaults work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.config import ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own NRM_* variables must not leak into these tests."""
    for key in list(os.environ):
        if key.startswith("NRM_"):
            monkeypatch.delenv(key)


def config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert text.startswith("invalid configuration:")
    return text


def test_defaults() -> None:
    s = load_settings()
    assert s.embedded_database and s.embedded_temporal
    assert s.resolved_temporal_address == "127.0.0.1:7233"
    assert s.service_ports == {
        "intake": 8101,
        "verification": 8102,
        "support": 8103,
        "oversight": 8104,
    }
    assert s.codec_port == 8105 and s.temporal_ui_port == 8233
    assert s.data_dir == Path(".nrm")
    assert s.resolved_keyring_file == Path(".nrm") / "keyring.json"
    assert s.state_file == Path(".nrm") / "state.json"
    assert (s.db_pool_min, s.db_pool_max) == (1, 10)
    assert s.log_level == "INFO"


def test_valid_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NRM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NRM_DATABASE_URL", "postgresql://nrm:pw@db.example.org:5432/nrm")
    monkeypatch.setenv("NRM_TEMPORAL_ADDRESS", "temporal.example.org:7233")
    monkeypatch.setenv("NRM_INTAKE_PORT", "9101")
    monkeypatch.setenv("NRM_DB_POOL_MIN", "5")
    monkeypatch.setenv("NRM_DB_POOL_MAX", "5")
    s = load_settings()
    assert not s.embedded_database and not s.embedded_temporal
    assert s.resolved_temporal_address == "temporal.example.org:7233"
    assert s.service_ports["intake"] == 9101
    assert s.resolved_keyring_file == tmp_path / "keyring.json"
    assert s.state_file == tmp_path / "state.json"


def test_postgres_scheme_alias_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NRM_DATABASE_URL", "postgres://u@h/nrm")
    assert load_settings().database_url == "postgres://u@h/nrm"


def test_bad_database_url_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    text = config_error(monkeypatch, NRM_DATABASE_URL="mysql://root:secret@db/nrm")
    assert "NRM_DATABASE_URL: must start with postgresql://" in text
    assert "secret" not in text  # the offending value (which may hold a password) is not echoed


@pytest.mark.parametrize(
    "address", ["localhost", "localhost:", ":7233", "temporal:port", "temporal:99999"]
)
def test_bad_temporal_address(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    text = config_error(monkeypatch, NRM_TEMPORAL_ADDRESS=address)
    assert "NRM_TEMPORAL_ADDRESS: must be host:port" in text


def test_duplicate_ports_name_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    text = config_error(monkeypatch, NRM_INTAKE_PORT="8104")  # the oversight default
    assert "NRM_INTAKE_PORT and NRM_OVERSIGHT_PORT share port 8104" in text


def test_duplicate_ports_with_temporal(monkeypatch: pytest.MonkeyPatch) -> None:
    text = config_error(monkeypatch, NRM_CODEC_PORT="7233")
    assert "NRM_TEMPORAL_PORT and NRM_CODEC_PORT share port 7233" in text


def test_non_numeric_port(monkeypatch: pytest.MonkeyPatch) -> None:
    text = config_error(monkeypatch, NRM_SUPPORT_PORT="eighty")
    assert "NRM_SUPPORT_PORT: Input should be a valid integer" in text


def test_port_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    text = config_error(monkeypatch, NRM_TEMPORAL_UI_PORT="80")
    assert "NRM_TEMPORAL_UI_PORT: Input should be greater than or equal to 1024" in text


def test_pool_min_above_max(monkeypatch: pytest.MonkeyPatch) -> None:
    text = config_error(monkeypatch, NRM_DB_POOL_MIN="20", NRM_DB_POOL_MAX="5")
    assert "NRM_DB_POOL_MIN (20) must not exceed NRM_DB_POOL_MAX (5)" in text


def test_every_bad_value_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    text = config_error(
        monkeypatch, NRM_DATABASE_URL="sqlite:///x.db", NRM_INTAKE_PORT="x", NRM_LOG_LEVEL="LOUD"
    )
    lines = text.splitlines()[1:]
    assert len(lines) == 3
    assert {line.strip().split(":")[0] for line in lines} == {
        "NRM_DATABASE_URL",
        "NRM_INTAKE_PORT",
        "NRM_LOG_LEVEL",
    }


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValueError, match="frozen"):
        s.intake_port = 1  # type: ignore[misc]

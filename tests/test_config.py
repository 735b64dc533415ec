"""Settings precedence and validation, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import load_settings
from appliance.errors import ConfigError


def test_embedded_defaults() -> None:
    settings = load_settings(env={})
    assert settings.port == 8443
    assert settings.data_dir == Path("./var")
    assert settings.database_path.name == "clinicbox.db"
    assert settings.idle_logoff_minutes == 15


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("CLINICBOX_PORT", "70000", "between 1 and 65535"),
        ("CLINICBOX_LOG_LEVEL", "LOUD", "log_level"),
        ("CLINICBOX_DISCOVERY_ENABLED", "maybe", "true or false"),
        ("CLINICBOX_CENTRAL_URL", "ftp://x", "https://"),
    ],
)
def test_bad_values_name_the_setting(key: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(env={key: value})


def test_unknown_setting_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(env={"CLINICBOX_CONFIG": str(cfg)})

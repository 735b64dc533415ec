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
        ("CLINICBOX_MEDIA_LAN_NETWORKS", "10.0.0.0/24, clinic", "media_lan_networks"),
        ("CLINICBOX_UPLINK_KBPS", "-5", "uplink_kbps"),
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


def test_lan_networks_and_uplink_reach_the_sfu() -> None:
    from appliance.server import adaptation_settings

    settings = load_settings(env={"CLINICBOX_MEDIA_LAN_NETWORKS": "192.168.8.0/24",
                                  "CLINICBOX_UPLINK_KBPS": "2000"})
    adaptation = adaptation_settings(settings)
    assert [str(n) for n in adaptation.lan_networks] == ["192.168.8.0/24"]
    assert adaptation.uplink_bps == 2_000_000
    learnt = adaptation_settings(load_settings(env={}))
    assert learnt.uplink_bps is None and learnt.lan_networks  # this machine's own networks


def test_public_url_and_join_window_settings_are_checked() -> None:
    settings = load_settings(env={})
    assert settings.portal_url == f"https://{settings.hostname}.local:8443"
    assert (settings.join_opens_minutes_before, settings.join_closes_minutes_after) == (30, 120)
    custom = load_settings(env={"CLINICBOX_PUBLIC_URL": "https://clinic.example.org/",
                                "CLINICBOX_JOIN_OPENS_MINUTES_BEFORE": "10"})
    assert custom.portal_url == "https://clinic.example.org"
    assert custom.join_opens_minutes_before == 10
    for key, value, message in (
        ("CLINICBOX_PUBLIC_URL", "clinic.example.org", "public_url must be like"),
        ("CLINICBOX_PUBLIC_URL", "https://clinic.example.org/join?x=1", "public_url must be"),
        ("CLINICBOX_JOIN_CLOSES_MINUTES_AFTER", "-5", "join_closes_minutes_after must be"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_settings(env={key: value})

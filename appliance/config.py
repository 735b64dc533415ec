"""Settings: embedded defaults, overridden by a TOML file, overridden by CLINICBOX_* variables."""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.errors import ConfigError
from appliance.media.locality import BadNetworks, parse_networks
from appliance.media.ports import parse_port_range

ENV_PREFIX = "CLINICBOX_"
DEFAULT_CONFIG_PATHS = (Path("/etc/clinicbox/clinicbox.toml"),)


@dataclass(frozen=True)
class Settings:
    """Every setting of the box, each with an embedded default."""

    data_dir: Path = Path("./var")
    host: str = "0.0.0.0"
    port: int = 8443
    hostname: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    log_level: str = "INFO"
    # Portal idle logoff, minutes (HIPAA-style automatic logoff).
    idle_logoff_minutes: int = 15
    # A staff session ends this many hours after sign-in however active (one clinic shift).
    session_max_hours: int = 12
    # UDP ports the SFU's ICE sockets bind in ("LOW-HIGH"); the firewall opens only these.
    media_ports: str = "40000-40999"
    # Central server for store-and-forward sync; empty means not configured yet.
    central_url: str = ""
    # mDNS adverts on the LAN.
    discovery_enabled: bool = True
    # Addresses offered as ICE host candidates, comma-separated; empty: every LAN address.
    media_addresses: str = ""
    # The clinic's own networks (CIDR, comma-separated); empty: the box's on-link networks.
    # Participants elsewhere are remote: they start conservatively and share the uplink.
    media_lan_networks: str = ""
    # The clinic's internet uplink in kbit/s shared by remote participants; 0: learn it.
    uplink_kbps: int = 0
    # The address patients use to reach the portal (invite links are built from it, never
    # from the request's Host header); empty: https://<hostname>.local:<port>.
    public_url: str = ""
    # A session's join code opens this many minutes before its start...
    join_opens_minutes_before: int = 30
    # ...and closes this many minutes after it (the call itself may run on).
    join_closes_minutes_after: int = 120
    # Seconds the shutdown may take before the process exits anyway.
    shutdown_timeout_s: float = 4.0
    # Where this configuration came from, for `clinicbox config show`.
    config_file: Path | None = None

    @property
    def portal_url(self) -> str:
        """The portal's public base URL, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{self.hostname}.local{port}"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "clinicbox.db"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _coerce(name: str, raw: Any, kind: type, source: str) -> Any:
    """Convert a raw TOML or environment value to the setting's type, or say what is wrong."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{source}: {name} must be true or false, got {raw!r}")
    if kind is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{source}: {name} must be a whole number, got {raw!r}")
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{source}: {name} must be a whole number, got {raw!r}") from None
    if kind is float:
        try:
            return float(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{source}: {name} must be a number, got {raw!r}") from None
    if kind is Path:
        text = str(raw).strip()
        if not text:
            raise ConfigError(f"{source}: {name} must not be empty")
        return Path(text)
    return str(raw).strip()


_TYPES: dict[str, type] = {
    "data_dir": Path,
    "host": str,
    "port": int,
    "hostname": str,
    "log_level": str,
    "idle_logoff_minutes": int,
    "session_max_hours": int,
    "media_ports": str,
    "central_url": str,
    "discovery_enabled": bool,
    "shutdown_timeout_s": float,
    "media_addresses": str,
    "media_lan_networks": str,
    "uplink_kbps": int,
    "public_url": str,
    "join_opens_minutes_before": int,
    "join_closes_minutes_after": int,
}


def _validate(values: dict[str, Any]) -> None:
    port = values.get("port")
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"port must be between 1 and 65535, got {port}")
    level = values.get("log_level")
    if level is not None and str(level).upper() not in _LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(_LOG_LEVELS)}, got {level!r}")
    minutes = values.get("idle_logoff_minutes")
    if minutes is not None and not 1 <= minutes <= 240:
        raise ConfigError(f"idle_logoff_minutes must be between 1 and 240, got {minutes}")
    hours = values.get("session_max_hours")
    if hours is not None and not 1 <= hours <= 72:
        raise ConfigError(f"session_max_hours must be between 1 and 72, got {hours}")
    ports = values.get("media_ports")
    if ports is not None:
        try:
            parse_port_range(str(ports))
        except ValueError as exc:
            raise ConfigError(f"media_ports: {exc}") from None
    uplink = values.get("uplink_kbps")
    if uplink is not None and not 0 <= uplink <= 10_000_000:
        raise ConfigError(f"uplink_kbps must be 0 (learn it) or a rate in kbit/s, got {uplink}")
    networks = values.get("media_lan_networks")
    if networks:
        try:
            parse_networks(str(networks))
        except BadNetworks as exc:
            raise ConfigError(f"media_lan_networks: {exc}") from None
    for name in ("join_opens_minutes_before", "join_closes_minutes_after"):
        minutes = values.get(name)
        if minutes is not None and not 0 <= minutes <= 24 * 60:
            raise ConfigError(f"{name} must be between 0 and 1440 minutes, got {minutes}")
    public = values.get("public_url")
    if public and not _is_base_url(str(public)):
        raise ConfigError(
            f"public_url must be like https://clinic.example.org (no path), got {public!r}"
        )
    url = values.get("central_url")
    if url and not str(url).startswith(("https://", "http://")):
        raise ConfigError(f"central_url must start with https://, got {url!r}")


def _is_base_url(text: str) -> bool:
    parts = urlsplit(text)
    return (
        parts.scheme in ("https", "http")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
        and text.isascii()
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (check CLINICBOX_CONFIG)") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable by this user") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("clinicbox", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [clinicbox] must be a table")
    unknown = sorted(set(section) - set(_TYPES))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return {k: _coerce(k, v, _TYPES[k], str(path)) for k, v in section.items()}


def load_settings(env: dict[str, str] | None = None, config_path: Path | None = None) -> Settings:
    """Build the settings from defaults, the TOML file and CLINICBOX_* variables (in that order)."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}

    path = config_path
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    if path is None:
        path = next((p for p in DEFAULT_CONFIG_PATHS if p.exists()), None)
    if path is not None:
        values.update(_read_toml(path))
        values["config_file"] = path

    for name, kind in _TYPES.items():
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = _coerce(name, env[key], kind, f"environment {key}")

    _validate(values)
    if "log_level" in values:
        values["log_level"] = str(values["log_level"]).upper()
    return Settings(**values)

"""The secret that lets the updater (root) ask a release under trial for a loopback call."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from appliance.files import write_private

PROBE_HEADER = "X-CB-Probe"


def probe_secret_path(data_dir: Path) -> Path:
    return data_dir / "secrets" / "update-probe"


def probe_secret(data_dir: Path) -> str:
    """The probe secret, made on first use (0600, owned like the data dir)."""
    path = probe_secret_path(data_dir)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_urlsafe(32)
        write_private(path, value.encode())
        if os.geteuid() == 0 and data_dir.exists():
            owner = data_dir.stat()
            os.chown(path, owner.st_uid, owner.st_gid)
        return value

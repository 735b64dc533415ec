"""Running the real `clinicbox` command against a test data dir."""

from __future__ import annotations

import subprocess

from appliance.config import Settings
from tests.conftest import CLINICBOX, box_env, free_port


def clinicbox(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `clinicbox ARGS` with this data dir; return the finished process."""
    return subprocess.run(
        [CLINICBOX, *args], env=box_env(settings.data_dir, free_port(), **env),
        capture_output=True, text=True, timeout=120,
    )

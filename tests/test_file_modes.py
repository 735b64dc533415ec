"""Outside systemd (no UMask=0077) the box's files are private whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CLINICBOX, box_env, free_port, start_box


@pytest.fixture
def loose_umask() -> Iterator[None]:
    # The usual interactive umask: files 0644 and directories 0755 unless the box says so.
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_and_state_are_private_under_a_loose_umask(tmp_path: Path, loose_umask: None):
    data = tmp_path / "data"
    password = tmp_path / "pw"
    password.write_text("correct horse battery\n")
    provisioned = subprocess.run(
        [
            CLINICBOX,
            "provision",
            "--clinic-name",
            "Hill clinic",
            "--admin-user",
            "admin.ana",
            "--admin-password-file",
            str(password),
            "--tech-user",
            "tech.tom",
            "--tech-password-file",
            str(password),
        ],
        env=box_env(data, free_port()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert provisioned.returncode == 0, provisioned.stderr
    box = start_box(data)
    try:
        assert box.get("/healthz")[0] == 200
        for name in ("clinicbox.db", "clinicbox.db-wal", "clinicbox.db-shm"):
            assert _mode(data / name) == 0o600, name
        assert _mode(data) == 0o700
        assert _mode(data / "state") == 0o700
        for path in data.rglob("*"):
            if path.is_dir():
                assert _mode(path) == 0o700, path
            else:
                assert _mode(path) & 0o077 == 0, path
    finally:
        box.stop()

"""The technician page's update section shows what the launcher recorded: the running and
previous release and why the last update was rolled back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.update.releases import ReleaseRoot, prepare
from tests.conftest import start_box
from tests.provisioning.test_technician import Browser, _provision

pytestmark = pytest.mark.timeout(180)


def test_technician_page_shows_release_and_rollback_reason(tmp_path: Path) -> None:
    root = ReleaseRoot(tmp_path / "opt")
    for version in ("1.0.1", "1.0.2"):
        root.release_dir(version).mkdir(parents=True)
        (root.release_dir(version) / ".complete").write_bytes(b"")
    root.switch("1.0.2")
    root.write_state(
        {
            "current": "1.0.1",
            "previous": "1.0.0",
            "trial": {
                "version": "1.0.2",
                "previous": "1.0.1",
                "deadline": time.time() + 300,
                "boots": 1,
                "failed": "loopback call forwarded 40 audio and 0 video frames",
            },
        }
    )
    assert prepare(root, None) == "1.0.1"

    data = tmp_path / "data"
    assert _provision(data, tmp_path).returncode == 0
    box = start_box(data, CLINICBOX_RELEASE_ROOT=str(root.path))
    try:
        tech = Browser(box)
        tech.sign_in("tech.tom")
        status, page = tech.get("/technician")
        assert status == 200
        assert 'id="updates"' in page
        assert "<td>1.0.1</td>" in page and "<td>1.0.0</td>" in page
        assert "1.0.2: rolled-back" in page
        assert "0 video frames" in page
    finally:
        box.stop()

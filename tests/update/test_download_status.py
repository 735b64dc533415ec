"""`clinicbox update status` tells the technician what the sync agent downloaded: a bundle on
its way (how far), one ready for the after-hours install, and releases refused here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.update.conftest import CLINICBOX


def _status(tmp: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
    env.update(CLINICBOX_DATA_DIR=str(tmp / "data"), CLINICBOX_RELEASE_ROOT=str(tmp / "opt"))
    done = subprocess.run(
        [CLINICBOX, "update", "status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_status_shows_download_progress_readiness_and_refusals(tmp_path: Path) -> None:
    updates = tmp_path / "data" / "updates"
    updates.mkdir(parents=True)
    assert "download: none" in _status(tmp_path)

    sha = "ab" * 32
    (updates / f"{sha}.part").write_bytes(b"x" * 250)
    state = {"version": "1.0.1", "sha256": sha, "size": 1000, "refused": {}}
    (updates / "download.json").write_text(json.dumps(state))
    assert "download: 1.0.1 25% of 1,000 bytes" in _status(tmp_path)

    ready = updates / "ready" / f"clinicbox-1.0.1-{sha[:12]}.cbup"
    ready.parent.mkdir()
    ready.write_bytes(b"x" * 1000)
    (updates / f"{sha}.part").unlink()
    refused = {"1.0.0": "bundle signed by release key 12ab, which this box does not trust"}
    state.update(ready=str(ready), refused=refused)
    (updates / "download.json").write_text(json.dumps(state))
    text = _status(tmp_path)
    assert "download: 1.0.1 100% of 1,000 bytes, ready: installed after hours" in text
    assert "1.0.0 refused: bundle signed by release key 12ab" in text
    doc = json.loads(_status(tmp_path, "--json"))
    assert doc["download"]["ready"] is True and doc["download"]["version"] == "1.0.1"

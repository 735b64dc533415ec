"""A/B updates with real processes: a supervised box on 1.0.0 updates to 1.0.1 from a delta
bundle file and commits it; a release that forwards no video (1.0.2) fails its loopback-call
health check and the box serves again on 1.0.1 with its records intact."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.update.conftest import Bundles, wait_serving


def _users(box) -> list[str]:
    with sqlite3.connect(box.data / "clinicbox.db") as db:
        table = next(
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if "user" in name.lower() and "session" not in name.lower()
        )
        return [row[0] for row in db.execute(f"SELECT username FROM {table}")]


# Three release installs and several service starts: minutes on a loaded 2-core host.
@pytest.mark.timeout(1200)
def test_update_commits_then_bad_release_rolls_back(supervised, bundles: Bundles) -> None:
    box, supervisor = supervised
    wait_serving(box, "1.0.0")

    done = box.update("import", str(bundles.v101))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "committed"
    # Only the app's wheel travelled: the dependencies were on the box already.
    assert result["bytes_from_bundle"] < 0.05 * result["full_bytes"]
    wait_serving(box, "1.0.1")

    # A record written on 1.0.1, by 1.0.1's own code.
    env_user = {**box.env, "CLINICBOX_NEW_PASSWORD": "correct horse battery staple"}
    import subprocess

    from tests.update.conftest import LAUNCHER

    added = subprocess.run(
        ["python3", str(LAUNCHER), "run", "user", "add", "nurse1", "--role", "clinician"],
        env=env_user,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    assert "nurse1" in _users(box)

    # This time the updater is 1.0.1's own `clinicbox` (as on a box: bin/clinicbox runs the
    # current release), so a release must be able to install the next one.
    bad = subprocess.run(
        ["python3", str(LAUNCHER), "run", "update", "import", str(bundles.v102_broken)],
        env=box.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 1, bad.stderr
    outcome = json.loads(bad.stdout)
    assert outcome["outcome"] == "rolled back"
    assert "video" in outcome["reason"], outcome  # /healthz alone said ok: the call did not
    wait_serving(box, "1.0.1")

    status = json.loads(box.update("status", "--json").stdout)
    assert status["current"] == "1.0.1"
    assert status["trial"] is None
    assert status["last"]["outcome"] == "rolled-back"
    assert status["last"]["version"] == "1.0.2"
    assert "video" in status["last"]["reason"]
    assert "nurse1" in _users(box)
    verified = subprocess.run(
        ["python3", str(LAUNCHER), "run", "audit", "verify"],
        env=box.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr

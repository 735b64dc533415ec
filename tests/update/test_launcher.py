"""The launcher's start-up decision on real release roots: a trial that failed, crashed too
often or outlived its window goes back to the previous release (restoring the database
snapshot when the release migrated), and an incomplete release is never started."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from appliance.update.releases import MAX_TRIAL_BOOTS, ReleaseRoot, prepare


def _root(tmp_path: Path, *versions: str) -> ReleaseRoot:
    root = ReleaseRoot(tmp_path / "opt")
    for version in versions:
        root.release_dir(version).mkdir(parents=True)
        (root.release_dir(version) / ".complete").write_bytes(b"")
    return root


def _on_trial(root: ReleaseRoot, **trial: object) -> None:
    root.switch("2.0")
    doc = {
        "version": "2.0",
        "previous": "1.0",
        "started_at": time.time(),
        "deadline": time.time() + 300,
        "boots": 0,
        "failed": None,
        "restore_snapshot": False,
        **trial,
    }
    root.write_state({"current": "1.0", "trial": doc})


def test_trial_release_starts_and_counts_its_boots(tmp_path: Path) -> None:
    root = _root(tmp_path, "1.0", "2.0")
    _on_trial(root)
    for boot in range(1, MAX_TRIAL_BOOTS + 1):
        assert prepare(root, None) == "2.0"
        assert root.read_state()["trial"]["boots"] == boot
    # One crash too many: back to 1.0, and why.
    assert prepare(root, None) == "1.0"
    assert root.current_version() == "1.0"
    state = root.read_state()
    assert state["trial"] is None
    assert state["last"]["outcome"] == "rolled-back"
    assert "stopped 3 times" in state["last"]["reason"]


def test_unconfirmed_trial_rolls_back_after_its_window(tmp_path: Path) -> None:
    root = _root(tmp_path, "1.0", "2.0")
    _on_trial(root, deadline=time.time() - 1)
    assert prepare(root, None) == "1.0"
    assert "trial window" in root.read_state()["last"]["reason"]


def test_failed_migrating_release_gets_its_snapshot_back(tmp_path: Path) -> None:
    root = _root(tmp_path, "1.0", "2.0")
    db = tmp_path / "clinicbox.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('before')")
    conn.close()
    root.snapshot_database(db, "2.0")
    with sqlite3.connect(db) as conn:  # what the new release's migration did
        conn.execute("ALTER TABLE notes ADD COLUMN v2 TEXT")
    conn.close()
    _on_trial(root, failed="loopback call forwarded 0 video frames", restore_snapshot=True)
    assert prepare(root, db) == "1.0"
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(notes)")]
        assert columns == ["id", "body"]
        assert conn.execute("SELECT body FROM notes").fetchall() == [("before",)]
    conn.close()
    assert json.loads(root.state_file.read_text())["last"]["reason"].startswith("loopback")


def test_incomplete_current_release_is_never_started(tmp_path: Path) -> None:
    root = _root(tmp_path, "1.0")
    root.release_dir("2.0").mkdir(parents=True)  # cut before it was marked complete
    root.write_state({"current": "1.0", "trial": None})
    root.switch("2.0")
    assert prepare(root, None) == "1.0"
    assert root.current_version() == "1.0"


def test_cut_between_trial_record_and_switch_starts_the_old_release(tmp_path: Path) -> None:
    root = _root(tmp_path, "1.0", "2.0")
    root.switch("1.0")
    root.write_state(
        {
            "current": "1.0",
            "trial": {
                "version": "2.0",
                "previous": "1.0",
                "deadline": time.time() + 300,
                "boots": 0,
            },
        }
    )
    assert prepare(root, None) == "1.0"


def test_other_commands_neither_count_a_boot_nor_take_the_pid_file(tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.update.conftest import LAUNCHER

    root = _root(tmp_path, "1.0", "2.0")
    program = root.release_dir("2.0") / "venv" / "bin" / "clinicbox"
    program.parent.mkdir(parents=True)
    program.write_text('#!/bin/sh\necho "release 2.0: $*"\n')
    program.chmod(0o755)
    _on_trial(root)
    env = {**os.environ, "CLINICBOX_RELEASE_ROOT": str(root.path)}
    done = subprocess.run(
        ["python3", str(LAUNCHER), "run", "user", "add", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.strip() == "release 2.0: user add x"
    assert root.read_state()["trial"]["boots"] == 0
    assert not (root.state_dir / "service.pid").exists()
    done = subprocess.run(
        ["python3", str(LAUNCHER), "run", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.strip() == "release 2.0: serve"
    assert root.read_state()["trial"]["boots"] == 1
    assert (root.state_dir / "service.pid").exists()


def test_first_bundle_on_an_installed_box_falls_back_to_the_install(tmp_path: Path) -> None:
    from appliance.update.releases import FACTORY

    root = _root(tmp_path, "2.0")
    (root.path / "venv" / "bin").mkdir(parents=True)
    (root.path / "venv" / "bin" / "python").write_text("")
    assert root.running_version() == FACTORY
    root.switch("2.0")
    root.write_state(
        {
            "trial": {
                "version": "2.0",
                "previous": FACTORY,
                "boots": 0,
                "deadline": time.time() + 300,
                "failed": "no video",
            }
        }
    )
    assert prepare(root, None) is None
    assert not root.current.exists() and not root.current.is_symlink()
    assert root.read_state()["last"]["outcome"] == "rolled-back"
    assert root.running_version() == FACTORY

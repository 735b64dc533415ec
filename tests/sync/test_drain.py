"""Real agent process against a real central server process: drain, status, down-sync."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.sync.conftest import Box, Central, delivered_at_centre, wait_drained

pytestmark = pytest.mark.timeout(120)


def _drain_and_check(box: Box, central: Central) -> None:
    link = box.claim(central)
    box.add_records(40)
    agent = box.start_agent()
    try:
        held = wait_drained(box, central, link.device_id)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
    # Changed after being sent: must go again as new versions. (The agent is stopped for the
    # edit: in `clinicbox serve` both share one process and store; two processes writing the
    # same SQLite file can meet "database is locked".)
    box.add_records(0, edit=5)
    agent = box.start_agent()
    try:
        held = wait_drained(box, central, link.device_id)
        time.sleep(0.5)  # the last receipt
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
    # Every current version, plus the 5 superseded first versions that were sent before.
    assert box.expected() <= held and len(held) == 85
    counts = [n for _r, _v, n in delivered_at_centre(central, link.device_id)]
    assert counts and max(counts) == 1
    status = json.loads(box.cli("sync", "status", "--json").stdout)
    assert status["queued"] == {"urgent": 0, "clinical": 0, "routine": 0, "telemetry": 0}
    assert status["last_success_at"] and status["bytes_today"] > 0
    assert status["delivered"] == 80  # one outbox entry per record, re-armed by the edit


def test_drain_sqlite(tmp_path, central_sqlite):
    _drain_and_check(Box(tmp_path / "box"), central_sqlite)


def test_drain_postgresql(tmp_path, postgres):
    central = Central(tmp_path / "central", postgres, workers=2)
    try:
        _drain_and_check(Box(tmp_path / "box"), central)
        devices = [json.loads(x) for x in central.cli("devices").stdout.splitlines()]
        assert devices and devices[-1]["records"] >= 85
    finally:
        central.stop()


def test_downsync_applies_signed_changes(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    box.claim(central_sqlite)
    central_sqlite.cli("publish", "schedule", "week-47", '{"slots": ["mon 10:00"]}')
    central_sqlite.cli("publish", "config", "idle_logoff_minutes", "10")
    agent = box.start_agent()
    path = box.data_dir / "state" / "central" / "schedule.json"
    try:
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
    assert json.loads(path.read_text())["week-47"]["body"] == {"slots": ["mon 10:00"]}
    config = json.loads((box.data_dir / "state" / "central" / "config.json").read_text())
    assert config["idle_logoff_minutes"]["body"] == 10


def test_clinicbox_serve_runs_the_agent(tmp_path, central_sqlite):
    """The agent drains the outbox as a task on the MediaLoop of a real `clinicbox serve`."""
    from tests.conftest import start_box

    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    box.add_records(15)
    fast = {k: v for k, v in box.env().items() if k.startswith("CLINICBOX_SYNC_")}
    running = start_box(box.data_dir, **fast)
    try:
        wait_drained(box, central_sqlite, link.device_id, timeout=30)
        for _ in range(50):  # the box applies the last receipt
            status = json.loads(box.cli("sync", "status", "--json").stdout)
            if sum(status["queued"].values()) == 0:
                break
            time.sleep(0.2)
        assert sum(status["queued"].values()) == 0 and status["last_success_at"]
    finally:
        assert running.stop() == 0
    counts = [n for _r, _v, n in delivered_at_centre(central_sqlite, link.device_id)]
    assert len(counts) == 30 and max(counts) == 1

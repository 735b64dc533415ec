"""`clinicbox serve` speaks systemd's notify protocol: READY, watchdog pings, STOPPING."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from appliance.sdnotify import notify, watchdog_interval_s
from tests.conftest import start_box

pytestmark = pytest.mark.timeout(90)


def _drain(sock: socket.socket, until: float) -> list[str]:
    got: list[str] = []
    while time.monotonic() < until:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return got


def test_serve_notifies_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)
        box = start_box(tmp_path / "data", NOTIFY_SOCKET=str(path), WATCHDOG_USEC="400000")
        try:
            messages = _drain(sock, time.monotonic() + 2.0)
            assert "READY=1" in messages
            # WatchdogSec/2 = 0.2 s: several pings in 2 s, sent from the media loop.
            assert messages.count("WATCHDOG=1") >= 4, messages
        finally:
            assert box.stop() == 0
        assert "STOPPING=1" in _drain(sock, time.monotonic() + 0.5) + messages


def test_notify_is_a_noop_without_socket_and_reports_a_dead_one(tmp_path: Path) -> None:
    assert notify("READY=1", env={}) is False
    assert notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None


def test_a_hung_media_loop_stops_the_watchdog_pings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from appliance.media_loop import MediaLoop
    from appliance.sdnotify import start_watchdog

    path = tmp_path / "notify.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    media = MediaLoop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)
        media.start()
        try:
            start_watchdog(media)
            assert _drain(sock, time.monotonic() + 1.0).count("WATCHDOG=1") >= 5

            async def hang() -> None:
                time.sleep(3.0)  # blocks the loop, as a stuck codec or a deadlock would

            asyncio.run_coroutine_threadsafe(hang(), media.loop)
            _drain(sock, time.monotonic() + 0.5)  # a ping may already be in flight
            assert _drain(sock, time.monotonic() + 1.5) == []
            # Once the loop runs again, so do the pings.
            assert "WATCHDOG=1" in _drain(sock, time.monotonic() + 2.5)
        finally:
            media.stop()

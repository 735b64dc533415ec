"""SIGKILL at random moments, and a link that answers 500s, hangs and cuts mid-batch."""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.sync.conftest import Box, Central, delivered_at_centre, wait_drained
from tests.sync.faultproxy import FaultProxy


def _assert_exactly_once(box: Box, central: Central, device_id: str) -> None:
    rows = delivered_at_centre(central, device_id)
    assert rows and all(n == 1 for _r, _v, n in rows), "a record version was stored twice"
    assert box.expected() <= {(r, v) for r, v, _n in rows}, "a record was lost"
    from appliance.store import open_store

    store = open_store(box.settings)
    try:
        from appliance.store.outbox import Outbox

        stats = Outbox(store).stats()
    finally:
        store.close()
    assert sum(stats["lanes"].values()) == 0 and stats["oldest_undelivered_age_s"] is None


@pytest.mark.timeout(600)
def test_sigkill_at_random_moments(tmp_path, central_sqlite):
    """50 agent processes killed with SIGKILL mid-sync; records added and edited between.

    The kill moments are drawn around how long an agent takes, in this run, from its start
    to its first batch at the centre: on a busy machine a process may need longer than any
    fixed window just to start, and then every kill would land before it synced anything."""
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    box.add_records(150)
    rng = random.Random(1234)

    def held() -> set[tuple[str, int]]:
        return {(r, v) for r, v, _n in delivered_at_centre(central_sqlite, link.device_id)}

    began = time.monotonic()
    agent = box.start_agent(CLINICBOX_SYNC_START_BATCH="2", CLINICBOX_SYNC_MAX_BATCH="8")
    while not held() and time.monotonic() < began + 60:
        time.sleep(0.05)
    first_batch_s = time.monotonic() - began
    agent.send_signal(signal.SIGKILL)
    agent.wait(5)
    held_first = held()
    assert held_first, "no agent got a batch through in 60 s"
    for trial in range(50):
        agent = box.start_agent(CLINICBOX_SYNC_START_BATCH="2", CLINICBOX_SYNC_MAX_BATCH="8")
        time.sleep(first_batch_s * rng.uniform(0.5, 1.5))
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        if trial % 10 == 9:
            box.add_records(10, edit=3)
    held_before = held()
    assert len(held_before) > len(held_first), "no killed agent got anything through"
    agent = box.start_agent()
    try:
        wait_drained(box, central_sqlite, link.device_id)
        time.sleep(1.0)  # let the last receipt be applied on the box
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
    _assert_exactly_once(box, central_sqlite, link.device_id)


@pytest.mark.timeout(120)
def test_500s_timeouts_and_cut_connections(tmp_path, postgres):
    central = Central(tmp_path / "central", postgres, workers=2)
    proxy = FaultProxy(central.port, {"pass": 3, "http500": 1, "hang": 0.5, "cut_request": 1,
                                      "cut_response": 2}, central.data_dir)
    box = Box(tmp_path / "box")
    try:
        link = box.claim(central, url=f"https://127.0.0.1:{proxy.port}")
        box.add_records(120, edit=10)
        agent = box.start_agent()
        try:
            wait_drained(box, central, link.device_id, timeout=80)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = box.cli("sync", "status", "--json").stdout
                if '"clinical": 0' in status and '"routine": 0' in status:
                    break
                time.sleep(0.3)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(10)
        assert proxy.counts["cut_response"] > 0 and proxy.counts["http500"] > 0
        assert proxy.counts["hang"] + proxy.counts["cut_request"] > 0
        _assert_exactly_once(box, central, link.device_id)
        assert "last_error" in status and '"last_error": null' not in status
    finally:
        proxy.close()
        central.stop()

"""The agent yields to live sessions, keeps its daily byte budget and adapts its batch size."""

from __future__ import annotations

from dataclasses import replace

import pytest

from appliance.store import open_store
from sync.agent.agent import AgentConfig, SyncAgent
from sync.agent.claim import save_link
from tests.sync.conftest import Box, OperatorBrowser, add_operator, delivered_at_centre
from tests.sync.faultproxy import FaultProxy

pytestmark = pytest.mark.timeout(60)


def _agent(box: Box, **config) -> SyncAgent:
    store = open_store(box.settings)
    settings = {"connect_timeout_s": 1, "read_timeout_s": 1.5, "start_batch": 4, **config}
    cfg = AgentConfig(**settings)
    return SyncAgent(store, box.data_dir, box.identity, cfg)


def test_live_session_pauses_then_holds_rate(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    box.add_records(10)
    agent = _agent(box)
    try:
        agent.set_live_session_remote(True)
        assert agent.step() == 1.0 and agent.status.paused.startswith("live session")
        assert delivered_at_centre(central_sqlite, link.device_id) == []
        agent.config.live_rate_bps = 2000
        wait = agent.step()  # held to 2000 B/s: one small batch, then a wait to match
        assert wait > 0 and agent.status.paused is None
        assert 0 < len(delivered_at_centre(central_sqlite, link.device_id)) <= 8
        agent.set_live_session_remote(False)
        for _ in range(20):
            if agent.step() > 1.0:
                break
        assert len(delivered_at_centre(central_sqlite, link.device_id)) == 20
    finally:
        agent.store.close()


def test_daily_budget_stops_sending(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    box.add_records(30)
    agent = _agent(box, daily_bytes=3000)
    try:
        for _ in range(40):
            if agent.step() == 60.0:
                break
        assert agent.status.paused == "daily byte budget used up"
        sent = len(delivered_at_centre(central_sqlite, link.device_id))
        assert 0 < sent < 60
        assert agent.status.used_today() >= 3000
    finally:
        agent.store.close()


def test_batches_grow_on_success_and_halve_on_error(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    proxy = FaultProxy(central_sqlite.port, {"pass": 1}, central_sqlite.data_dir)
    box.claim(central_sqlite, url=f"https://127.0.0.1:{proxy.port}")
    box.add_records(60)
    # Answers on loopback are quick: growing 4x would hide the doubling this test follows.
    agent = _agent(box, max_batch=64, backoff_base_s=0.01, in_flight=1, read_timeout_s=30,
                   quick_answer_s=0)
    try:
        agent.step()
        assert agent.batch_size == 8 and agent.failures == 0
        proxy.weights = {"http500": 1}
        wait = agent.step()
        assert agent.batch_size == 4 and agent.failures == 1 and wait > 0
        assert "500" in agent.status.last_error
        proxy.weights = {"pass": 1}
        assert agent.step() == 0.0 and agent.batch_size == 8 and agent.failures == 0
    finally:
        agent.store.close()
        proxy.close()


def test_provisioning_claims_token_and_voucher(tmp_path, central_sqlite):
    """The provisioning code's claim records are what the agent reads; a voucher is presented
    on the agent's first contact."""
    from appliance.provisioning import accept_voucher, claim
    from sync.agent.claim import load_link

    by_token = Box(tmp_path / "token")
    token = central_sqlite.cli("claim-token").stdout.strip()
    claim(by_token.settings, central_sqlite.url, token)
    link = load_link(by_token.data_dir)
    assert link is not None and link.device_id == by_token.identity.fingerprint

    by_voucher = Box(tmp_path / "voucher")
    voucher = central_sqlite.cli("claim-voucher").stdout.strip()
    accept_voucher(by_voucher.settings, central_sqlite.url, voucher)
    assert load_link(by_voucher.data_dir) is None
    by_voucher.add_records(3)
    agent = _agent(by_voucher)
    try:
        for _ in range(5):  # the first step presents the voucher; batches start at 4 records
            agent.step()
        assert agent.status.last_error is None
        link = load_link(by_voucher.data_dir)
        assert link is not None and link.device_id == by_voucher.identity.fingerprint
        assert len(delivered_at_centre(central_sqlite, link.device_id)) == 6
    finally:
        agent.store.close()


def test_retention_purges_delivered_and_operator_page(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    box.add_records(2)
    agent = _agent(box, retention_s=0.0, pull_interval_s=3600)
    try:
        agent.step()
        assert agent.outbox.stats()["delivered"] == 4
        agent._last_pull = agent._last_purge = 0.0
        agent.step()  # idle: purges what the centre confirmed longer than retention_s ago
        assert agent.outbox.stats()["delivered"] == 0
    finally:
        agent.store.close()
    browser = OperatorBrowser(central_sqlite)
    assert browser.sign_in("ops", add_operator(central_sqlite, tmp_path)) == 302
    status, page, _ = browser.request("/")
    assert status == 200 and link.device_id in page and "clinical 0" in page


def test_the_byte_count_covers_what_crossed_the_wire(tmp_path, central_sqlite):
    """The daily budget counts at least the TCP payload a push really moved (TLS included)."""
    import socket
    import threading

    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    box.add_records(3)
    listener = socket.create_server(("127.0.0.1", 0))
    moved = {"up": 0, "down": 0}

    def relay() -> None:
        client, _ = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", central_sqlite.port))

        def pump(src: socket.socket, dst: socket.socket, key: str) -> None:
            while chunk := src.recv(65536):
                moved[key] += len(chunk)
                dst.sendall(chunk)
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the other side already closed both ways

        up = threading.Thread(target=pump, args=(client, upstream, "up"))
        up.start()
        pump(upstream, client, "down")
        up.join(5)

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    save_link(
        box.data_dir, replace(link, central_url=f"https://127.0.0.1:{listener.getsockname()[1]}")
    )
    agent = _agent(box, in_flight=1)  # the relay takes one connection
    try:
        agent.step()
        thread.join(10)
        assert agent.status.records_sent == 4  # one batch, one connection
        assert agent.status.used_today() >= moved["up"] + moved["down"] > 0
    finally:
        agent.store.close()
        listener.close()


def test_batches_grow_by_how_quickly_they_are_answered(tmp_path):
    box = Box(tmp_path / "box")
    agent = _agent(box, read_timeout_s=30, quick_answer_s=4, max_batch=4096)
    try:
        agent._succeeded(1.0)  # quick: a long round trip's ramp must not waste the window
        assert agent.batch_size == 16
        agent._succeeded(6.0)  # within a third of the read timeout: doubles
        assert agent.batch_size == 32
        agent._succeeded(11.0)  # over a third of it: a thin link, held where it is
        assert agent.batch_size == 32
    finally:
        agent.store.close()

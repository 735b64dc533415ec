"""Batches on their way at once share ONE kept-alive connection (pipelined), and a cut in the
middle of a pipelined batch loses and duplicates nothing.

A real `clinicbox sync run` drains to a real `clinicbox-central serve` through a proxy that
terminates TLS with the centre's own certificate (as a load balancer would; the box's pin
holds) and watches each connection's requests and answers.
"""

from __future__ import annotations

import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import pytest

from appliance.store import open_store
from appliance.store.outbox import Outbox
from sync.server.certificate import CERT_FILE, KEY_FILE
from tests.sync.conftest import Box, Central, wait_drained
from tests.sync.test_faults import _assert_exactly_once

pytestmark = pytest.mark.timeout(120)

PUSH = b"POST /v1/records HTTP/1.1"
ANSWER = b"HTTP/1.1 "
ANSWER_DELAY_S = 0.1


@dataclass
class Watched:
    """What one client connection carried."""

    pushes: int = 0
    answers: int = 0
    most_unanswered: int = 0  # pushes seen before the earlier ones were answered
    cut: bool = False


class WatchingProxy:
    """TLS-terminating forwarder to the centre; `cut_second_push` closes the first
    connection on which a second push starts while the first is unanswered, 700 bytes into
    that second request (past its ~450-byte head, inside a body of 8 or more records): a cut
    mid-batch with a batch ahead of it."""

    def __init__(self, central: Central, cut_second_push: bool = False) -> None:
        self.upstream = ("127.0.0.1", central.port)
        self.cut_second_push = cut_second_push
        self.cuts = 0
        self.lock = threading.Lock()
        self.connections: list[Watched] = []
        self.server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_tls.load_cert_chain(central.data_dir / CERT_FILE, central.data_dir / KEY_FILE)
        self.client_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client_tls.check_hostname = False
        self.client_tls.verify_mode = ssl.CERT_NONE
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.server_tls.wrap_socket(raw, server_side=True)
            upstream = self.client_tls.wrap_socket(socket.create_connection(self.upstream))
        except OSError:
            raw.close()
            return
        watched = Watched()
        with self.lock:
            self.connections.append(watched)
        threading.Thread(
            target=self._answers, args=(upstream, client, watched), daemon=True
        ).start()
        tail = b""
        cut_at: int | None = None
        try:
            while data := client.recv(65536):
                seen = tail + data
                with self.lock:
                    for _ in range(seen.count(PUSH)):
                        watched.pushes += 1
                        unanswered = watched.pushes - watched.answers
                        watched.most_unanswered = max(watched.most_unanswered, unanswered)
                        if (
                            self.cut_second_push
                            and not self.cuts
                            and unanswered >= 2
                            and cut_at is None
                        ):
                            self.cuts += 1
                            watched.cut = True
                            cut_at = seen.rfind(PUSH) - len(tail) + 700
                tail = seen[-len(PUSH) :]
                if cut_at is not None and cut_at < len(data):
                    upstream.sendall(data[: max(0, cut_at)])
                    break  # mid-batch: the rest of this batch never reaches the centre
                upstream.sendall(data)
                if cut_at is not None:
                    cut_at -= len(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _answers(self, upstream: ssl.SSLSocket, client: ssl.SSLSocket, watched: Watched) -> None:
        try:
            while data := upstream.recv(65536):
                # A round trip's worth of delay, as on a real link: the box has its next
                # batches written before a receipt comes back however busy the machine is.
                time.sleep(ANSWER_DELAY_S)
                client.sendall(data)
                with self.lock:
                    watched.answers += data.count(ANSWER)
        except OSError:
            pass

    def pushing(self) -> list[Watched]:
        with self.lock:
            return [w for w in self.connections if w.pushes]

    def close(self) -> None:
        self.listener.close()


def _queued_on_box(box: Box) -> int:
    store = open_store(box.settings)
    try:
        return sum(Outbox(store).stats()["lanes"].values())
    finally:
        store.close()


def _drain_through(tmp_path, central: Central, proxy: WatchingProxy) -> Box:
    box = Box(tmp_path / "box")
    link = box.claim(central, url=f"https://127.0.0.1:{proxy.port}")
    box.add_records(80, edit=10)
    # Batches of 8-16 records, three on their way at once, nothing idle long enough for a
    # new connection; a generous read timeout so the loaded test machine causes no failure.
    agent = box.start_agent(
        CLINICBOX_SYNC_START_BATCH="8",
        CLINICBOX_SYNC_MAX_BATCH="16",
        CLINICBOX_SYNC_READ_TIMEOUT_S="10",
        CLINICBOX_SYNC_CONNECT_TIMEOUT_S="5",
    )
    try:
        wait_drained(box, central, link.device_id, timeout=90)
        deadline = time.monotonic() + 30  # and the last receipts are back on the box
        while _queued_on_box(box) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
    _assert_exactly_once(box, central, link.device_id)
    return box


def test_batches_in_flight_share_one_connection(tmp_path, central_sqlite) -> None:
    proxy = WatchingProxy(central_sqlite)
    try:
        _drain_through(tmp_path, central_sqlite, proxy)
        pushing = proxy.pushing()
        # 170 record versions in batches of at most 16: a dozen batches or more, all on one
        # connection, with a second batch written before the first one's receipt came back.
        assert sum(w.pushes for w in pushing) >= 10
        assert len(pushing) == 1, [(w.pushes, w.most_unanswered) for w in pushing]
        assert pushing[0].most_unanswered >= 2
    finally:
        proxy.close()


def test_cut_mid_batch_behind_another_loses_and_duplicates_nothing(
    tmp_path, central_sqlite
) -> None:
    proxy = WatchingProxy(central_sqlite, cut_second_push=True)
    try:
        _drain_through(tmp_path, central_sqlite, proxy)
        # The cut hit a connection carrying two batches at once, in the second one's body.
        assert proxy.cuts == 1
        cut = [w for w in proxy.pushing() if w.cut]
        assert cut and cut[0].most_unanswered >= 2
        # Everything arrived once (checked above), on connections opened after the cut.
        assert len(proxy.pushing()) >= 2
    finally:
        proxy.close()

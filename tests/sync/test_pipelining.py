"""Batches share kept-alive connections and several are on their way at once."""

from __future__ import annotations

import socket
import threading

import pytest

from appliance.store import open_store
from sync.agent.agent import AgentConfig, SyncAgent
from tests.sync.conftest import Box, delivered_at_centre

pytestmark = pytest.mark.timeout(60)


class CountingForwarder:
    """A plain TCP forwarder to the centre (TLS passes through untouched) that counts the
    connections made."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_batches_share_kept_alive_connections_and_overlap(tmp_path, central_sqlite) -> None:
    forwarder = CountingForwarder(central_sqlite.port)
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite, url=f"https://127.0.0.1:{forwarder.port}")
    box.add_records(120)
    store = open_store(box.settings)
    agent = SyncAgent(
        store,
        box.data_dir,
        box.identity,
        AgentConfig(start_batch=4, max_batch=8, in_flight=3, pull_interval_s=3600),
    )
    try:
        most_on_their_way = 0
        for _ in range(200):
            wait = agent.step()
            most_on_their_way = max(most_on_their_way, len(agent._flying) + 1)
            if wait > 0:  # idle: everything sent
                break
        assert len(delivered_at_centre(central_sqlite, link.device_id)) == 240
        assert agent.status.last_error is None
        # 30+ batches of at most 8 records over three kept-alive connections (plus one for
        # the idle down-sync pull and one for the update check), not one connection a batch.
        assert forwarder.connections <= 5, forwarder.connections
        assert most_on_their_way == 3
    finally:
        store.close()
        forwarder.close()

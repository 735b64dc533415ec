"""A client that opens TCP and never finishes its TLS handshake (a phone on EDGE, an uplink
cut mid-handshake, a port scanner) must not stop the server answering everyone else: the box's
portal and the centre both handshake on worker threads, not on the thread that accepts."""

from __future__ import annotations

import socket
import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import RunningBox
from tests.sync.conftest import Central

# Well under the servers' 30 s read timeout, for which one stalled handshake on the
# accepting thread used to hold every other client.
ANSWER_WITHIN_S = 20.0


@contextmanager
def stalled_handshakes(port: int, count: int = 3) -> Iterator[None]:
    """Open `count` TCP connections to the server that never send a ClientHello."""
    stallers = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    try:
        yield
    finally:
        for staller in stallers:
            staller.close()


def test_the_portal_answers_beside_stalled_handshakes(running_box: RunningBox) -> None:
    with stalled_handshakes(running_box.port):
        status, _ = running_box.get("/healthz", timeout=ANSWER_WITHIN_S)
    assert status == 200


def test_the_centre_answers_beside_stalled_handshakes(tmp_path: Path) -> None:
    # One worker process, so the stalled connections and the request meet the same one.
    central = Central(tmp_path / "central", None, workers=1)
    try:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with stalled_handshakes(central.port):
            with urllib.request.urlopen(
                f"{central.url}/v1/ping", context=context, timeout=ANSWER_WITHIN_S
            ) as answer:
                assert answer.status == 200
    finally:
        central.stop()

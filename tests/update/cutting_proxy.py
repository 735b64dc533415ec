"""A TLS-terminating proxy on loopback that cuts the link in the middle of answers.

It presents the centre's own certificate and key (as a load balancer in front of the centre
would, so the box's pin holds), relays one request per connection, and closes the
connection after every `cut_every` bytes of bundle downloads it passed: a download is cut
mid-bundle again and again. It counts the bundle bytes it passed, so a test can tell
whether anything was sent twice.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from sync.server.certificate import CERT_FILE, KEY_FILE
from tests.sync.faultproxy import _one_request_per_connection, _read_request


class CuttingProxy:
    """Listen on 127.0.0.1:<port>, relay to the centre, cut after every `cut_every` bytes."""

    def __init__(self, upstream_port: int, centre_dir: Path, cut_every: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.cut_every = cut_every
        self.body_bytes = 0
        self.cuts = 0
        self._until_cut = cut_every
        self._lock = threading.Lock()
        self.server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_tls.load_cert_chain(centre_dir / CERT_FILE, centre_dir / KEY_FILE)
        self.client_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client_tls.check_hostname = False
        self.client_tls.verify_mode = ssl.CERT_NONE
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            client = self.server_tls.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        try:
            self._relay(client)
        except OSError:
            pass
        finally:
            client.close()

    def _relay(self, client: ssl.SSLSocket) -> None:
        request = _one_request_per_connection(_read_request(client))
        download = request.startswith(b"GET /v1/updates/bundles/")
        with (
            socket.create_connection(self.upstream, timeout=10) as tcp,
            self.client_tls.wrap_socket(tcp) as upstream,
        ):
            upstream.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = upstream.recv(65536)
                if not chunk:
                    client.sendall(head)
                    return
                head += chunk
            head, _, body = head.partition(b"\r\n\r\n")
            client.sendall(head + b"\r\n\r\n")
            while True:
                if not download:
                    client.sendall(body)
                elif body and not self._pass(client, body):
                    return
                body = upstream.recv(65536)
                if not body:
                    return

    def _pass(self, client: ssl.SSLSocket, body: bytes) -> bool:
        """Send `body`, or the part of it before the next cut (then False: cut)."""
        with self._lock:
            take = min(len(body), self._until_cut)
            self._until_cut -= take
            self.body_bytes += take
            cut = self._until_cut == 0
            if cut:
                self._until_cut = self.cut_every
                self.cuts += 1
        client.sendall(body[:take])
        return not cut

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(2)

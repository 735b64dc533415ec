"""A fault-injecting HTTPS proxy on loopback: passes, answers 500, hangs, or cuts connections.

It terminates TLS with the centre's own certificate and key (as a TLS-terminating load
balancer in front of the centre would), so the box's pin holds and the proxy sees each HTTP
request whole: a cut response happens after the centre has stored the batch.
"""

from __future__ import annotations

import random
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from sync.server.certificate import CERT_FILE, KEY_FILE

MODES = ("pass", "http500", "hang", "cut_request", "cut_response")


class FaultProxy:
    """Listen on 127.0.0.1:<port>; per connection pick a mode by `weights` (seeded)."""

    def __init__(
        self,
        upstream_port: int,
        weights: dict[str, float],
        centre_dir: Path,
        seed: int = 7,
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> None:
        """`centre_dir` holds the TLS certificate and key the proxy presents; `rewrite`, if
        given, edits each passed response body (an on-path party that changes answers)."""
        self.upstream = ("127.0.0.1", upstream_port)
        self.rewrite = rewrite
        self.weights = weights
        self.random = random.Random(seed)
        self.counts = dict.fromkeys(MODES, 0)
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

    def _pick(self) -> str:
        modes = list(self.weights)
        return self.random.choices(modes, [self.weights[m] for m in modes])[0]

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            mode = self._pick()
            self.counts[mode] += 1
            threading.Thread(target=self._handle, args=(client, mode), daemon=True).start()

    def _handle(self, raw: socket.socket, mode: str) -> None:
        raw.settimeout(5)
        try:
            client = self.server_tls.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        try:
            if mode == "http500":
                _read_request(client)
                client.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            elif mode == "hang":
                _read_request(client)
                self._stop.wait(3)  # longer than the agent's read timeout
            elif mode == "cut_request":
                client.recv(200)
            else:
                self._relay(client, cut=mode == "cut_response")
        except OSError:
            pass
        finally:
            client.close()

    def _relay(self, client: ssl.SSLSocket, cut: bool) -> None:
        """Forward one request/response; with `cut`, drop the response after a few bytes
        (the centre has stored the batch, the box never sees the receipt)."""
        request = _one_request_per_connection(_read_request(client))
        with (
            socket.create_connection(self.upstream, timeout=5) as tcp,
            self.client_tls.wrap_socket(tcp) as upstream,
        ):
            upstream.sendall(request)
            if self.rewrite is not None and not cut:
                client.sendall(_rewritten(upstream, self.rewrite))
                return
            while chunk := upstream.recv(65536):
                if cut:
                    client.sendall(chunk[:20])
                    return
                client.sendall(chunk)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(2)


def _rewritten(upstream: ssl.SSLSocket, rewrite: Callable[[bytes], bytes]) -> bytes:
    """The whole response from `upstream` with its body passed through `rewrite`."""
    data = b""
    while chunk := upstream.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    body = rewrite(body)
    lines = [h for h in head.split(b"\r\n") if not h.lower().startswith(b"content-length")]
    return b"\r\n".join([*lines, b"Content-Length: %d" % len(body)]) + b"\r\n\r\n" + body


def _one_request_per_connection(request: bytes) -> bytes:
    """`request` asking the centre to close after answering, as a proxy that serves one
    request per connection must: the centre's `Connection: close` then reaches the client,
    which opens a new connection (through a new fault) for its next request. Without it the
    client would reuse a connection the proxy no longer reads."""
    head, _, body = request.partition(b"\r\n\r\n")
    lines = [
        line for line in head.split(b"\r\n")
        if line.partition(b":")[0].strip().lower() != b"connection"
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


def _read_request(sock: ssl.SSLSocket) -> bytes:
    """One whole HTTP request (headers and Content-Length body) as bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body

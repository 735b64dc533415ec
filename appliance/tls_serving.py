"""TLS for the cheroot servers (the box's portal, the centre), handshaking on worker threads.

cheroot's built-in adapter completes each TLS handshake on the one thread that accepts
connections, bounded only by the server's read timeout (30 s). A single client that opens
TCP and then stalls its handshake (a phone on EDGE, a clinic uplink cut mid-handshake, a
port scanner) stops every other client of that server for that long: a patient behind it
waits, or is told the clinic is offline. Here accepting only wraps the socket, and the
handshake runs on the worker thread that serves the connection, like reading a request.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

from cheroot.server import HTTPConnection, HTTPServer
from cheroot.ssl.builtin import BuiltinSSLAdapter

log = logging.getLogger(__name__)


class DeferredHandshakeAdapter(BuiltinSSLAdapter):
    """cheroot's built-in TLS adapter, minus the handshake on the accepting thread."""

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, Any]]:
        """Wrap an accepted socket; `WorkerHandshakeConnection` handshakes it later."""
        wrapped = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        return wrapped, {"wsgi.url_scheme": "https", "HTTPS": "on"}


class WorkerHandshakeConnection(HTTPConnection):
    """A connection that completes its TLS handshake before reading its first request."""

    handshaken = False

    def communicate(self) -> bool:
        """Handshake once (on this worker thread), then serve requests as cheroot does."""
        if not self.handshaken:
            try:
                self.socket.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                # A client that gave up, spoke plain HTTP or timed out: nothing to answer.
                log.debug("TLS handshake with %s failed: %s", self.remote_addr, exc)
                return False
            self.handshaken = True
            self.ssl_env = self.server.ssl_adapter.get_environ(self.socket)
        return bool(super().communicate())


def serve_tls(server: HTTPServer, certfile: str, keyfile: str) -> ssl.SSLContext:
    """Make `server` speak TLS with handshakes off its accepting thread; returns the context
    so the caller can tighten versions and ciphers."""
    adapter = DeferredHandshakeAdapter(certfile, keyfile)
    server.ssl_adapter = adapter
    server.ConnectionClass = WorkerHandshakeConnection
    context: ssl.SSLContext = adapter.context
    return context

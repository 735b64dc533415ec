"""A small blocking HTTPS client with separate connect and read timeouts (run in an executor).

One request per connection (`Connection: close`): a cut link costs one TCP handshake, and
no half-dead keep-alive connection outlives a link flap.

HTTPS only, and the centre is recognised by its pinned TLS key (`sync.protocol.pinning`), not
by a CA: the pin comes from the claim token or voucher, and a connection whose certificate
does not carry the pinned key is closed before a byte of the request is sent.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sync.protocol.pinning import tls_pin_of_der

# What a request costs beyond its bodies, for the daily byte budget: the TLS 1.3 handshake
# with the centre's certificate (one per request: `Connection: close`) and the HTTP headers.
# Measured in TCP payload beyond the bodies: 2,181 bytes for a pinned `GET /v1/ping`, 2,425
# for a signed push (its X-CB-* headers); big bodies add 22 bytes per 16 KiB TLS record.
REQUEST_OVERHEAD_BYTES = 2_500


class TransportError(Exception):
    """The request did not complete: no route, refused, timeout, cut, or a 5xx answer."""


class PinMismatch(TransportError):
    """The server's TLS key is not the pinned centre's: someone else answered."""


class Rejected(Exception):
    """The centre answered 4xx: this request will not succeed as it is."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass
class Response:
    status: int
    body: bytes
    wire_bytes: int

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise TransportError("the centre's answer is not JSON") from None


class HttpClient:
    """Requests to one base URL."""

    def __init__(self, base_url: str, connect_timeout: float, read_timeout: float,
                 tls_pin: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"central URL must be https://host[:port], got {base_url!r}")
        if not tls_pin:
            raise ValueError("no pinned TLS key for the centre: claim the box again")
        self.host = parts.hostname
        self.port = parts.port or 443
        self.prefix = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.tls_pin = tls_pin
        # The pin, checked after the handshake, is the trust decision: no CA and no host name
        # check (the box reaches the centre by IP or through proxies as often as by name).
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE

    def _check_pin(self, conn: http.client.HTTPSConnection) -> None:
        der = conn.sock.getpeercert(binary_form=True) if conn.sock is not None else None
        seen = tls_pin_of_der(der) if der else "none"
        if seen != self.tls_pin:
            raise PinMismatch(
                f"the server at {self.host}:{self.port} is not the pinned centre "
                f"(TLS key {seen[:12]}..., expected {self.tls_pin[:12]}...)"
            )

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> Response:
        """Send one request; TransportError for link trouble or 5xx, Rejected for 4xx."""
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.connect_timeout,
                                           context=self.context)
        all_headers = {"Connection": "close", "Content-Type": "application/octet-stream"}
        all_headers.update(headers or {})
        try:
            conn.connect()
            self._check_pin(conn)
            conn.sock.settimeout(self.read_timeout)
            conn.request(method, self.prefix + path, body=body, headers=all_headers)
            answer = conn.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            kind = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else "failed"
            raise TransportError(f"{method} {path} {kind}: {exc.__class__.__name__}") from None
        finally:
            conn.close()
        wire = len(body) + len(data) + REQUEST_OVERHEAD_BYTES
        if answer.status >= 500:
            raise TransportError(f"{method} {path}: centre answered {answer.status}")
        if answer.status >= 400:
            try:
                message = json.loads(data).get("error", "")
            except (ValueError, AttributeError):
                message = data[:200].decode(errors="replace")
            raise Rejected(answer.status, message)
        return Response(answer.status, data, wire)

"""A small blocking HTTPS client with separate connect and read timeouts (run in an executor).

By default one request per connection (`Connection: close`). With `keep_alive` the client
keeps its connection for the next request (the agent's batches skip a TCP and TLS handshake,
two round trips, each): it is dropped on any error, and not reused after `MAX_IDLE_S` of
quiet, well inside the centre's 30 s idle timeout, so a half-dead connection from before a
link flap is never written to.

HTTPS only, and the centre is recognised by its pinned TLS key (`sync.protocol.pinning`), not
by a CA: the pin comes from the claim token or voucher, and a connection whose certificate
does not carry the pinned key is closed before a byte of the request is sent.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sync.protocol.pinning import tls_pin_of_der

# What a request costs beyond its bodies, for the daily byte budget. A new connection pays
# the TLS 1.3 handshake with the centre's certificate; every request pays its HTTP headers.
# Measured in TCP payload beyond the bodies, on a new connection: 2,181 bytes for a pinned
# `GET /v1/ping`, 2,425 for a signed push (its X-CB-* headers); big bodies add 22 bytes per
# 16 KiB TLS record.
HANDSHAKE_BYTES = 2_100
HEADER_BYTES = 400
MAX_IDLE_S = 15.0


class TransportError(Exception):
    """The request did not complete: no route, refused, timeout, cut, or a 5xx answer."""


class PinMismatch(TransportError):
    """The server's TLS key is not the pinned centre's: someone else answered."""


class StaleConnection(TransportError):
    """A kept-alive connection turned out closed before any answer: send again on a new one
    (re-signed: the centre may have seen the first request's nonce)."""


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


def refusal_message(data: bytes) -> str:
    """What the centre said in a 4xx answer's body (its JSON `error`, else the text)."""
    try:
        message = json.loads(data).get("error", "")
    except (ValueError, AttributeError):
        message = data[:200].decode(errors="replace")
    return str(message)


@dataclass(frozen=True)
class PinnedCentre:
    """The centre's address and the TLS key it must show. The pin, checked after the
    handshake, is the trust decision: no CA and no host name check (the box reaches the
    centre by IP or through proxies as often as by name)."""

    host: str
    port: int
    prefix: str
    tls_pin: str

    @classmethod
    def parse(cls, base_url: str, tls_pin: str) -> PinnedCentre:
        """ValueError saying what to fix for a URL that is not https://host[:port] or no pin."""
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"central URL must be https://host[:port], got {base_url!r}")
        if not tls_pin:
            raise ValueError("no pinned TLS key for the centre: claim the box again")
        return cls(parts.hostname, parts.port or 443, parts.path.rstrip("/"), tls_pin)

    @staticmethod
    def tls_context() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def check(self, der: bytes | None) -> None:
        """PinMismatch unless the certificate `der` carries the pinned key."""
        seen = tls_pin_of_der(der) if der else "none"
        if seen != self.tls_pin:
            raise PinMismatch(
                f"the server at {self.host}:{self.port} is not the pinned centre "
                f"(TLS key {seen[:12]}..., expected {self.tls_pin[:12]}...)"
            )


class HttpClient:
    """Requests to one base URL."""

    def __init__(self, base_url: str, connect_timeout: float, read_timeout: float,
                 tls_pin: str, keep_alive: bool = False) -> None:
        self.centre = PinnedCentre.parse(base_url, tls_pin)
        self.base_url = base_url
        self.host, self.port, self.prefix = self.centre.host, self.centre.port, self.centre.prefix
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keep_alive = keep_alive
        self._conn: http.client.HTTPSConnection | None = None
        self._last_used = 0.0
        self.context = self.centre.tls_context()

    def _check_pin(self, conn: http.client.HTTPSConnection) -> None:
        self.centre.check(conn.sock.getpeercert(binary_form=True) if conn.sock else None)

    def _connection(self) -> http.client.HTTPSConnection:
        """A pinned connection: the kept one if fresh enough, else a new one."""
        if self._conn is not None and time.monotonic() - self._last_used < MAX_IDLE_S:
            return self._conn
        self.close()
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.connect_timeout,
                                           context=self.context)
        try:
            conn.connect()
            self._check_pin(conn)
        except BaseException:
            conn.close()
            raise
        conn.sock.settimeout(self.read_timeout)
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> Response:
        """Send one request; TransportError for link trouble or 5xx, Rejected for 4xx."""
        all_headers = {"Content-Type": "application/octet-stream"}
        if not self.keep_alive:
            all_headers["Connection"] = "close"
        all_headers.update(headers or {})
        conn = None
        reused = self._conn is not None and time.monotonic() - self._last_used < MAX_IDLE_S
        try:
            conn = self._connection()
            conn.request(method, self.prefix + path, body=body, headers=all_headers)
            answer = conn.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
            self._conn = None
            if reused and isinstance(exc, ConnectionError | http.client.BadStatusLine):
                raise StaleConnection(f"{method} {path}: kept connection was closed") from None
            kind = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else "failed"
            raise TransportError(f"{method} {path} {kind}: {exc.__class__.__name__}") from None
        if self.keep_alive and not answer.will_close:
            self._conn, self._last_used = conn, time.monotonic()
        else:
            conn.close()
            self._conn = None
        wire = len(body) + len(data) + HEADER_BYTES + (0 if reused else HANDSHAKE_BYTES)
        if answer.status >= 500:
            raise TransportError(f"{method} {path}: centre answered {answer.status}")
        if answer.status >= 400:
            raise Rejected(answer.status, refusal_message(data))
        return Response(answer.status, data, wire)

    def fetch_into(self, path: str, headers: dict[str, str], accept: tuple[int, ...],
                   sink: Callable[[bytes], bool]) -> int:
        """GET `path` and hand the body to `sink` block by block as it arrives, so what came
        before a cut is kept; `sink` returns False to stop early (the connection is then
        dropped). Returns the bytes spent beyond the body (headers, handshake) for the budget.

        TransportError for link trouble, a 5xx, a cut body or a status not in `accept`;
        Rejected for 4xx.
        """
        all_headers = {} if self.keep_alive else {"Connection": "close"}
        all_headers.update(headers)
        reused = self._conn is not None and time.monotonic() - self._last_used < MAX_IDLE_S
        conn = None
        stopped = False
        try:
            conn = self._connection()
            conn.request("GET", self.prefix + path, headers=all_headers)
            answer = conn.getresponse()
            if answer.status >= 400 or answer.status not in accept:
                data = answer.read(64 * 1024)
                conn.close()
                self._conn = None
                self._refuse(answer.status, data, path)
            # read1: whatever has arrived, so a slow link still reaches `sink` (and its
            # chance to stop) every few kilobytes.
            while block := answer.read1(64 * 1024):
                if not sink(block):
                    stopped = True
                    break
            if not stopped and answer.length:
                raise http.client.IncompleteRead(b"", answer.length)
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
            self._conn = None
            if reused and isinstance(exc, ConnectionError | http.client.BadStatusLine):
                raise StaleConnection(f"GET {path}: kept connection was closed") from None
            kind = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else "failed"
            raise TransportError(f"GET {path} {kind}: {exc.__class__.__name__}") from None
        if self.keep_alive and not stopped and not answer.will_close:
            self._conn, self._last_used = conn, time.monotonic()
        else:
            conn.close()
            self._conn = None
        return HEADER_BYTES + (0 if reused else HANDSHAKE_BYTES)

    @staticmethod
    def _refuse(status: int, data: bytes, path: str) -> None:
        if status >= 500 or status < 400:
            raise TransportError(f"GET {path}: centre answered {status}")
        raise Rejected(status, refusal_message(data))

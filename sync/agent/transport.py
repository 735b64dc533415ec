"""A small blocking HTTP client with separate connect and read timeouts (run in an executor).

One request per connection (`Connection: close`): a cut link costs one TCP handshake, and
no half-dead keep-alive connection outlives a link flap.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class TransportError(Exception):
    """The request did not complete: no route, refused, timeout, cut, or a 5xx answer."""


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

    def __init__(self, base_url: str, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 ca_file: Path | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"central URL must be http(s)://host[:port], got {base_url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> Response:
        """Send one request; TransportError for link trouble or 5xx, Rejected for 4xx."""
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.connect_timeout,
                                               context=self.context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        all_headers = {"Connection": "close", "Content-Type": "application/octet-stream"}
        all_headers.update(headers or {})
        try:
            conn.connect()
            conn.sock.settimeout(self.read_timeout)
            conn.request(method, self.prefix + path, body=body, headers=all_headers)
            answer = conn.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            kind = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else "failed"
            raise TransportError(f"{method} {path} {kind}: {exc.__class__.__name__}") from None
        finally:
            conn.close()
        wire = len(body) + len(data) + 300  # ~300 bytes of request and response headers
        if answer.status >= 500:
            raise TransportError(f"{method} {path}: centre answered {answer.status}")
        if answer.status >= 400:
            try:
                message = json.loads(data).get("error", "")
            except (ValueError, AttributeError):
                message = data[:200].decode(errors="replace")
            raise Rejected(answer.status, message)
        return Response(answer.status, data, wire)

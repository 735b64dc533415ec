"""Serving a patient request that arrived through the tunnel with the box's own portal.

The centre's REQUEST head becomes a WSGI environ for the portal app (no second HTTP server,
no loopback hop). Only this module sets `RELAYED` in an environ, and a direct request can
never carry it (cheroot only makes `HTTP_*` keys from headers). The client address is the
head's `client` field, which the centre fills with the address it saw; headers never set it
(an `X-Forwarded-For` among them is dropped, whoever wrote it), so a patient cannot rotate
addresses to escape the portal's per-address limits. The relay allow-list (`web.relay`)
applies to exactly these requests.
"""

from __future__ import annotations

import io
import ipaddress
import sys
from collections.abc import Callable, Iterable
from typing import Any

RELAYED = "clinicbox.relayed"
METHODS = frozenset({"GET", "HEAD", "POST"})
# Same bound as the portal's own MAX_CONTENT_LENGTH.
MAX_BODY = 2 * 1024 * 1024


class BadRelayedRequest(Exception):
    """The centre's request head is not usable; the stream is reset."""


def _client_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise BadRelayedRequest("the centre's client address is not one address") from None


def relayed_environ(head: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The WSGI environ for one relayed request (BadRelayedRequest if the head is wrong)."""
    method, path, script = head.get("method"), head.get("path"), head.get("script")
    query, host, headers = head.get("query", ""), head.get("host", ""), head.get("headers", [])
    if method not in METHODS:
        raise BadRelayedRequest("method not relayed")
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadRelayedRequest("path must start with /")
    if not isinstance(script, str) or not script.startswith("/c/"):
        raise BadRelayedRequest("script must be the clinic's /c/ prefix")
    if not isinstance(query, str) or not isinstance(host, str) or not isinstance(headers, list):
        raise BadRelayedRequest("query, host and headers are malformed")
    client = head.get("client")
    if not isinstance(client, str) or not client:
        raise BadRelayedRequest("the centre did not say who the client is")
    server_name, _, port = host.partition(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": server_name or "relay",
        "SERVER_PORT": port or "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": _client_address(client),
        "REMOTE_PORT": "0",
        "HTTP_HOST": host,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        RELAYED: True,
    }
    for pair in headers:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(p, str) for p in pair)
        ):
            raise BadRelayedRequest("headers are [name, value] pairs")
        name, value = pair
        key = name.upper().replace("-", "_")
        if key in ("X_FORWARDED_FOR", "FORWARDED", "X_REAL_IP"):
            continue  # a claim about the client: only the head's `client` field counts
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key not in ("CONTENT_LENGTH", "HOST"):
            environ["HTTP_" + key] = value
    return environ


StartResponse = Callable[..., Any]


class WsgiAnswer:
    """Runs the portal for one environ; yields the status and headers, then body chunks."""

    def __init__(
        self,
        app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
        environ: dict[str, Any],
    ) -> None:
        self.status = "500 Internal Server Error"
        self.headers: list[tuple[str, str]] = []
        self._written: list[bytes] = []
        self._result = app(environ, self._start_response)
        self._iterator = iter(self._result)

    def _start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        self.status, self.headers = status, list(headers)
        return self._written.append

    def first_chunk(self) -> bytes | None:
        """The first piece of the body (the app may call start_response only here)."""
        for chunk in self._iterator:
            if chunk:
                return b"".join([*self._written, chunk])
        return b"".join(self._written) or None

    def rest(self) -> Iterable[bytes]:
        for chunk in self._iterator:
            if chunk:
                yield chunk

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()

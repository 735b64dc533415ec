"""Public patient entry: `https://<centre>/c/<slug>/...` relayed to the box through its tunnel.

The centre forwards the request to the worker thread that holds the box's tunnel (over a
unix socket in its data dir) and streams the answer back. What the centre does here, and
why:

- It names the client by the address it sees, in the request head's own `client` field
  (not a header, so nothing a patient sends can pose as it), and drops any
  `X-Forwarded-For` the patient sent: the box keys its rate limits on that address.
- It forwards only ordinary browser headers, never the centre's own operator cookie.
- It confines every cookie the box sets to `Path=/c/<slug>/` (and drops any Domain), so one
  clinic's cookies never reach another clinic's box or the centre's own pages.
- It bounds request bodies (2 MiB, as the box does); the tunnel bounds answers (16 MiB).
- When the box's tunnel is down it answers a plain page saying so (503).

Which routes a patient may reach is the box's decision (`web.relay`): everything else is a
404 there, and the centre adds no second list that could drift from the box's.
"""

from __future__ import annotations

import html
import socket
from collections.abc import Callable, Iterator
from typing import Any

from sync.protocol.tunnel_frames import (
    FrameError,
    FrameReader,
    FrameType,
    encode,
    encode_data,
    encode_json,
)
from sync.server.centre import Centre
from sync.server.clinic_relays import SLUG, device_of, tunnel_socket
from sync.server.tunnel import MAX_RESPONSE_BYTES

PREFIX = "/c/"
MAX_REQUEST_BODY = 2 * 1024 * 1024
CONNECT_TIMEOUT_S = 5.0
# Waiting for the start of the box's answer (the tunnel probes a quiet box well before), then
# between pieces of a streamed answer.
ANSWER_TIMEOUT_S = 30.0
STREAM_TIMEOUT_S = 120.0
OPERATOR_COOKIE = "cbc_session"
FORWARDED_REQUEST_HEADERS = (
    "Accept",
    # The box gzips its static files and SDP answers for the patient's slow link.
    "Accept-Encoding",
    "Accept-Language",
    "Cache-Control",
    "Content-Type",
    "Cookie",
    "If-Modified-Since",
    "If-None-Match",
    "Origin",
    "Referer",
    "User-Agent",
    "X-CSRF-Token",
)
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "te",
        "trailer",
    }
)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _page(
    start_response: StartResponse,
    status: str,
    title: str,
    text: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        '<body style="font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    ).encode()
    start_response(
        status,
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *(extra or []),
        ],
    )
    return [body]


def offline_page(start_response: StartResponse) -> list[bytes]:
    return _page(
        start_response,
        "503 Service Unavailable",
        "Your clinic cannot be reached right now",
        "The clinic's video service is not connected at the moment. Nothing is wrong on your "
        "side. Please try again in a few minutes, or phone your clinic.",
        [("Retry-After", "30")],
    )


def confine_cookie(value: str, prefix: str) -> str:
    """A Set-Cookie value with its Path moved under `prefix` and any Domain removed."""
    parts = [p.strip() for p in value.split(";")]
    kept, path = [parts[0]], "/"
    for attribute in parts[1:]:
        name = attribute.split("=", 1)[0].strip().lower()
        if name == "path":
            path = attribute.split("=", 1)[1].strip() if "=" in attribute else "/"
        elif name != "domain" and attribute:
            kept.append(attribute)
    if not path.startswith("/"):
        path = "/"
    kept.insert(1, f"Path={prefix.rstrip('/')}{path}")
    return "; ".join(kept)


def _without_operator_cookie(cookie: str) -> str:
    pairs = [p.strip() for p in cookie.split(";")]
    return "; ".join(p for p in pairs if p and p.split("=", 1)[0].strip() != OPERATOR_COOKIE)


class RelayFront:
    """WSGI wrapper: paths under /c/ go to a clinic's box; anything else goes to `app`."""

    def __init__(self, app: Any, centre: Centre) -> None:
        self.app = app
        self.centre = centre

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            return self.app(environ, start_response)
        slug, slash, rest = path[len(PREFIX) :].partition("/")
        if not SLUG.fullmatch(slug):
            return _page(
                start_response,
                "404 Not Found",
                "No such clinic",
                "Check the link your clinic gave you.",
            )
        with self.centre.db.connection_context():
            device_id = device_of(slug)
        if device_id is None:
            return _page(
                start_response,
                "404 Not Found",
                "No such clinic",
                "Check the link your clinic gave you.",
            )
        if not slash:  # "/c/slug" without the slash: the join page
            start_response(
                "302 Found", [("Location", f"{PREFIX}{slug}/join"), ("Content-Length", "0")]
            )
            return []
        body = self._body(environ)
        if body is None:
            return _page(
                start_response,
                "413 Content Too Large",
                "Too much data",
                "That form sent more than the clinic accepts.",
            )
        head = {
            "method": environ.get("REQUEST_METHOD", "GET"),
            "script": f"{PREFIX}{slug}",
            "path": "/" + rest,
            "query": environ.get("QUERY_STRING", ""),
            "host": environ.get("HTTP_HOST", ""),
            "headers": self._headers(environ),
            # The address the centre saw, outside the header list a patient could fill.
            "client": environ.get("REMOTE_ADDR", ""),
        }
        try:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(CONNECT_TIMEOUT_S)
            conn.connect(str(tunnel_socket(self.centre.data_dir, device_id)))
        except OSError:
            conn.close()
            return offline_page(start_response)
        try:
            conn.sendall(encode_json(FrameType.REQUEST, 0, head))
            for frame in encode_data(0, body):
                conn.sendall(frame)
            conn.sendall(encode(FrameType.END))
            conn.settimeout(ANSWER_TIMEOUT_S)
            frames = self._frames(conn)
            first = next(frames, None)
        except (OSError, FrameError):
            first = None
        if first is None or first.kind != FrameType.RESPONSE:
            conn.close()
            return offline_page(start_response)
        try:
            answer = first.json()
            status = str(answer["status"])
            headers = self._answer_headers(answer.get("headers", []), f"{PREFIX}{slug}/")
        except (FrameError, KeyError, TypeError, ValueError):
            conn.close()
            return offline_page(start_response)
        start_response(status, headers)
        conn.settimeout(STREAM_TIMEOUT_S)
        return self._stream(conn, frames)

    # Request ---------------------------------------------------------------------------

    @staticmethod
    def _body(environ: dict[str, Any]) -> bytes | None:
        """The request body, or None when it is larger than MAX_REQUEST_BODY."""
        stream = environ.get("wsgi.input")
        length_text = environ.get("CONTENT_LENGTH") or ""
        if stream is None:
            return b""
        if length_text:
            try:
                length = int(length_text)
            except ValueError:
                return None
            if length > MAX_REQUEST_BODY or length < 0:
                return None
            return stream.read(length) if length else b""
        if environ.get("wsgi.input_terminated"):  # chunked upload
            data = stream.read(MAX_REQUEST_BODY + 1)
            return None if len(data) > MAX_REQUEST_BODY else data
        return b""

    @staticmethod
    def _headers(environ: dict[str, Any]) -> list[list[str]]:
        out = []
        for name in FORWARDED_REQUEST_HEADERS:
            key = name.upper().replace("-", "_")
            value = environ.get(key if key in ("CONTENT_TYPE",) else "HTTP_" + key)
            if name == "Cookie" and value:
                value = _without_operator_cookie(value)
            if value:
                out.append([name, value])
        # Boxes of earlier releases read the client address from this header (set here
        # only, never the patient's); current boxes ignore it and take the head's `client`.
        out.append(["X-Forwarded-For", environ.get("REMOTE_ADDR", "")])
        return out

    # Answer ----------------------------------------------------------------------------

    @staticmethod
    def _answer_headers(raw: Any, prefix: str) -> list[tuple[str, str]]:
        headers = []
        for name, value in raw:
            if not isinstance(name, str) or not isinstance(value, str):
                raise ValueError("header names and values are strings")
            if name.lower() in HOP_BY_HOP or "\n" in value or "\r" in value:
                continue
            if name.lower() == "set-cookie":
                value = confine_cookie(value, prefix)
            headers.append((name, value))
        return headers

    @staticmethod
    def _frames(conn: socket.socket) -> Iterator[Any]:
        reader = FrameReader()
        while True:
            data = conn.recv(256 * 1024)
            if not data:
                return
            yield from reader.feed(data)

    @staticmethod
    def _stream(conn: socket.socket, frames: Iterator[Any]) -> Iterator[bytes]:
        sent = 0
        try:
            for frame in frames:
                if frame.kind == FrameType.DATA:
                    sent += len(frame.payload)
                    if sent > MAX_RESPONSE_BYTES:
                        return
                    yield frame.payload
                else:  # END, or RESET: the box gave up mid-way (the answer is cut short)
                    return
        except (OSError, FrameError):
            return
        finally:
            conn.close()

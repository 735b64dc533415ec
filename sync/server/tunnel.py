"""The centre's end of a box's outbound tunnel.

A claimed box that the operator named for the relay (`clinicbox-central relay add`) opens one
TLS connection to the centre's port and sends a device-signed `GET /v1/tunnel` (timestamp and
nonce, like every sync request: a replay is refused). The centre answers `101 Switching
Protocols` and the connection carries frames (`sync.protocol.tunnel_frames`) from then on.

The worker thread that accepted the connection keeps it for the tunnel's life and is the only
thread that touches the TLS socket (the pool grows by one thread for each open tunnel, so
page requests keep theirs). It also listens on a unix socket in the data dir
(`clinic_relays.tunnel_socket`): any worker that receives a patient request for this box
connects there, and each such connection is one stream on the tunnel. A newer tunnel of the
same box takes the socket over; the older one notices and closes. So does a tunnel whose box
was removed from the relay.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sync.protocol import ProtocolError
from sync.protocol.signing import H_DEVICE, H_NONCE, H_SIGNATURE, H_TIMESTAMP, verify_request
from sync.protocol.tunnel_frames import (
    TUNNEL_PATH,
    UPGRADE_TOKEN,
    Frame,
    FrameError,
    FrameReader,
    FrameType,
    encode,
    encode_json,
)
from sync.server.centre import Centre, Refused
from sync.server.clinic_relays import slug_of, tunnel_socket, tunnel_socket_dir

log = logging.getLogger(__name__)

# The cheroot request behind a WSGI environ (set by `TunnelGateway`).
CHEROOT_REQUEST = "clinicbox.cheroot_request"
# The box pings every KEEPALIVE_S; silence for DEAD_AFTER_S means the link is gone.
KEEPALIVE_S = 60.0
DEAD_AFTER_S = 3 * KEEPALIVE_S + 15.0
MAX_STREAMS = 64
# A relayed answer larger than this is cut off (the box's pages and files are far smaller).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# How long a stalled writer (the box's link, a worker relaying to a slow patient) may hold
# the tunnel before that stream (or the tunnel) is dropped.
WRITE_TIMEOUT_S = 20.0
CHECK_EVERY_S = 2.0
# A patient is waiting and the box has said nothing for PROBE_AFTER_S: ping it; no answer
# within PROBE_TIMEOUT_S means the clinic's uplink is gone (the patient then gets the
# offline page instead of waiting for the box's own keep-alive to notice).
PROBE_AFTER_S = 5.0
PROBE_TIMEOUT_S = 10.0

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _json_answer(start_response: StartResponse, status: int, message: str) -> Iterable[bytes]:
    body = json.dumps({"error": message}).encode()
    reason = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        409: "Conflict",
        500: "Internal Server Error",
    }.get(status, "Error")
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


class TunnelEndpoint:
    """WSGI wrapper: `GET /v1/tunnel` becomes a tunnel session; anything else goes to `app`."""

    def __init__(
        self, app: Any, centre: Centre, public_url: str, stopping: threading.Event
    ) -> None:
        self.app = app
        self.centre = centre
        self.public_url = public_url.rstrip("/")
        self.stopping = stopping

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        if environ.get("PATH_INFO") != TUNNEL_PATH:
            return self.app(environ, start_response)
        request = environ.get(CHEROOT_REQUEST)
        if environ.get("REQUEST_METHOD") != "GET" or request is None:
            return _json_answer(start_response, 400, "open the tunnel with GET and an Upgrade")
        if environ.get("HTTP_UPGRADE", "") != UPGRADE_TOKEN:
            return _json_answer(start_response, 400, f"the tunnel needs Upgrade: {UPGRADE_TOKEN}")
        try:
            device_id, slug = self._authorize(environ)
        except Refused as exc:
            return _json_answer(start_response, exc.status, str(exc))
        except ProtocolError as exc:
            return _json_answer(start_response, 401, str(exc))
        try:
            tunnel_socket(self.centre.data_dir, device_id)
        except ValueError as exc:  # the operator's data dir path is too long for a unix socket
            log.error("tunnel refused: %s", exc)
            return _json_answer(start_response, 500, "the centre cannot hold tunnels (see its log)")
        self._take_over(request, device_id, slug)
        return []

    def _authorize(self, environ: dict[str, Any]) -> tuple[str, str]:
        headers = {
            name: environ.get("HTTP_" + name.upper().replace("-", "_"), "")
            for name in (H_DEVICE, H_TIMESTAMP, H_NONCE, H_SIGNATURE)
        }
        device_id = headers[H_DEVICE]
        if not device_id:
            raise Refused(401, "unsigned request")
        with self.centre.db.connection_context():
            key = self.centre.device_key(device_id)
            ts, nonce = verify_request(key, headers, "GET", TUNNEL_PATH, b"")
            self.centre.remember_nonce(device_id, nonce, ts)
            slug = slug_of(device_id)
        if slug is None:
            raise Refused(
                403,
                "this box is not enabled for the relay (the centre's operator "
                "runs 'clinicbox-central relay add DEVICE NAME')",
            )
        return device_id, slug

    def _take_over(self, request: Any, device_id: str, slug: str) -> None:
        """Answer 101, then run the session on this thread until the tunnel ends."""
        conn = request.conn
        sock = conn.socket
        # cheroot must neither answer this request nor reuse the connection afterwards.
        request.sent_headers = True
        request.close_connection = True
        pool = request.server.requests
        pool.grow(1)  # page requests keep their threads while this one holds the tunnel
        try:
            sock.settimeout(WRITE_TIMEOUT_S)
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Upgrade: " + UPGRADE_TOKEN.encode() + b"\r\nConnection: Upgrade\r\n\r\n"
            )
            public = f"{self.public_url}/c/{slug}" if self.public_url else f"/c/{slug}"
            session = TunnelSession(self.centre, sock, device_id, slug, public, self.stopping)
            session.run()
        except OSError as exc:
            log.info("tunnel of %s ended: %s", device_id[:12], exc.__class__.__name__)
        finally:
            pool.shrink(1)


class TunnelSession:
    """One open tunnel: relays streams between local unix-socket clients and the box."""

    def __init__(
        self,
        centre: Centre,
        sock: Any,
        device_id: str,
        slug: str,
        public_url: str,
        stopping: threading.Event,
    ) -> None:
        self.centre = centre
        self.sock = sock
        self.device_id = device_id
        self.slug = slug
        self.public_url = public_url
        self.stopping = stopping
        self.reader = FrameReader()
        self.path: Path = tunnel_socket(centre.data_dir, device_id)
        self.listener: socket.socket | None = None
        self.inode = 0
        self.next_stream = 1
        self.streams: dict[int, socket.socket] = {}
        self.stream_of: dict[socket.socket, tuple[int, FrameReader]] = {}
        self.sent_bytes: dict[int, int] = {}
        self.last_heard = time.monotonic()
        self.probe_sent = 0.0

    # Set-up and tear-down -------------------------------------------------------------

    def _listen(self) -> None:
        directory = tunnel_socket_dir(self.centre.data_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory.parent, 0o700)
        os.chmod(directory, 0o700)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bind under a private name, then rename over the box's socket: a worker relaying a
        # request always finds a listening socket (the newest tunnel's) or none.
        temporary = self.path.with_name(f"{self.path.stem}.{secrets.token_hex(3)}")
        try:
            temporary.unlink()
        except FileNotFoundError:
            pass
        listener.bind(str(temporary))
        os.chmod(temporary, 0o600)
        listener.listen(16)
        os.replace(temporary, self.path)
        self.inode = os.stat(self.path).st_ino
        self.listener = listener

    def _still_mine(self) -> bool:
        try:
            if os.stat(self.path).st_ino != self.inode:
                return False  # the box opened a newer tunnel
        except FileNotFoundError:
            return False
        with self.centre.db.connection_context():
            return slug_of(self.device_id) == self.slug

    def _close(self) -> None:
        for conn in list(self.stream_of):
            conn.close()
        self.streams.clear()
        self.stream_of.clear()
        if self.listener is not None:
            self.listener.close()
            try:
                if os.stat(self.path).st_ino == self.inode:
                    self.path.unlink()
            except FileNotFoundError:
                pass
        # The TLS socket stays open here: cheroot shuts it down and closes it when this
        # request returns (closing it twice kills the worker).

    # Main loop ------------------------------------------------------------------------

    def run(self) -> None:
        self._listen()
        log.info("tunnel open: box %s as /c/%s", self.device_id[:12], self.slug)
        try:
            self._send(
                encode_json(
                    FrameType.HELLO,
                    0,
                    {
                        "slug": self.slug,
                        "public_url": self.public_url,
                        "keepalive_s": KEEPALIVE_S,
                    },
                )
            )
            last_check = time.monotonic()
            while not self.stopping.is_set():
                now = time.monotonic()
                if now - self.last_heard > DEAD_AFTER_S:
                    log.info(
                        "tunnel of %s silent for %.0f s: closed",
                        self.device_id[:12],
                        now - self.last_heard,
                    )
                    return
                if self._box_gone(now):
                    log.info("tunnel of %s: no answer to a probe, closed", self.device_id[:12])
                    return
                if now - last_check > CHECK_EVERY_S:
                    last_check = now
                    if not self._still_mine():
                        log.info("tunnel of %s replaced or revoked: closed", self.device_id[:12])
                        return
                if self.sock.pending():
                    ready = [self.sock]
                else:
                    assert self.listener is not None
                    ready, _, _ = select.select(
                        [self.sock, self.listener, *self.stream_of], [], [], 1.0
                    )
                for source in ready:
                    if source is self.sock:
                        if not self._from_box():
                            return
                    elif source is self.listener:
                        self._accept()
                    else:
                        self._from_worker(source)
        except (FrameError, OSError) as exc:
            log.info("tunnel of %s closed: %s", self.device_id[:12], exc)
        finally:
            self._close()

    def _send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _box_gone(self, now: float) -> bool:
        """Probe a quiet box while patients wait; True when a probe went unanswered."""
        if self.probe_sent:
            return now - self.probe_sent > PROBE_TIMEOUT_S
        if self.streams and now - self.last_heard > PROBE_AFTER_S:
            self.probe_sent = now
            self._send(encode(FrameType.PING))
        return False

    # Box -> workers -------------------------------------------------------------------

    def _from_box(self) -> bool:
        data = self.sock.recv(256 * 1024)
        if not data:
            return False
        self.last_heard = time.monotonic()
        self.probe_sent = 0.0
        for frame in self.reader.feed(data):
            if frame.kind == FrameType.PING:
                self._send(encode(FrameType.PONG))
            elif frame.kind in (FrameType.RESPONSE, FrameType.DATA, FrameType.END, FrameType.RESET):
                self._to_worker(frame)
            elif frame.kind != FrameType.PONG:
                raise FrameError(f"the box may not send {frame.kind.name}")
        return True

    def _to_worker(self, frame: Frame) -> None:
        conn = self.streams.get(frame.stream)
        if conn is None:
            return  # the patient went away; the box learns it from our RESET
        total = self.sent_bytes.get(frame.stream, 0) + len(frame.payload)
        self.sent_bytes[frame.stream] = total
        if total > MAX_RESPONSE_BYTES:
            self._drop(conn, reset_box=True)
            return
        try:
            conn.sendall(encode(frame.kind, 0, frame.payload))
        except OSError:
            self._drop(conn, reset_box=True)
            return
        if frame.kind in (FrameType.END, FrameType.RESET):
            self._drop(conn, reset_box=False)

    # Workers -> box -------------------------------------------------------------------

    def _accept(self) -> None:
        assert self.listener is not None
        conn, _ = self.listener.accept()
        if len(self.streams) >= MAX_STREAMS:
            conn.close()  # the worker answers "busy"
            return
        conn.settimeout(WRITE_TIMEOUT_S)
        stream = self.next_stream
        self.next_stream = (self.next_stream + 2) % 0x7FFFFFFF or 1
        self.streams[stream] = conn
        self.stream_of[conn] = (stream, FrameReader())

    def _from_worker(self, conn: socket.socket) -> None:
        stream, reader = self.stream_of[conn]
        try:
            data = conn.recv(256 * 1024)
            frames = reader.feed(data) if data else []
        except (OSError, FrameError):
            data, frames = b"", []
        if not data:  # the worker gave up (the patient left): stop the box's work too
            self._drop(conn, reset_box=True)
            return
        for frame in frames:
            if frame.kind not in (FrameType.REQUEST, FrameType.DATA, FrameType.END):
                self._drop(conn, reset_box=True)
                return
            self._send(encode(frame.kind, stream, frame.payload))

    def _drop(self, conn: socket.socket, reset_box: bool) -> None:
        entry = self.stream_of.pop(conn, None)
        conn.close()
        if entry is None:
            return
        stream = entry[0]
        self.streams.pop(stream, None)
        self.sent_bytes.pop(stream, None)
        if reset_box:
            self._send(encode(FrameType.RESET, stream))

"""Batches pipelined on one kept-alive, pinned HTTPS connection to the centre.

Several requests are on their way at once on ONE connection (HTTP/1.1 pipelining: each is
written as soon as the one before it is written; the centre answers them in the order sent).
On EDGE (650 ms round trip, a queue of ~300 ms in front of 260 kbps) three batches on three
connections of their own, each in slow start, overflowed the link's queue: in the lab a
third of the uplink's frames were dropped at the queue and retransmission timeouts left the
link idle for seconds (benchmarks/JOURNAL.md). One connection backs off as one flow, pays
one TCP and TLS handshake, and the link carries the next batch while a receipt comes back.

One thread per connection alone reads and writes its TLS socket (OpenSSL's objects are not
for two threads at once); callers hand it requests and wait for their answers. The trust
decision is the centre's pinned TLS key, as for every sync request (`sync.agent.transport`).
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
from collections import deque

from sync.agent.transport import (
    HANDSHAKE_BYTES,
    HEADER_BYTES,
    MAX_IDLE_S,
    PinMismatch,
    PinnedCentre,
    Rejected,
    Response,
    StaleConnection,
    TransportError,
    refusal_message,
)

# Largest answer head and body the centre sends to a push (a listing receipt of a
# 1,024-record batch is ~130 KB): anything larger is not the centre talking.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
_CHUNK = 16 * 1024


class _Pending:
    """One request on a connection, and its answer once read."""

    def __init__(
        self, method: str, path: str, data: bytes, body_len: int, first_on_connection: bool
    ) -> None:
        self.label = f"{method} {path}"
        self.data = data
        self.body_len = body_len
        self.first_on_connection = first_on_connection
        self.done = threading.Event()
        self.status = 0
        self.body = b""
        self.error: TransportError | None = None

    def fail(self, error: TransportError) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class _Connection:
    """One TLS connection and the thread that writes requests to it and reads answers."""

    def __init__(self, sock: ssl.SSLSocket, read_timeout: float) -> None:
        self.sock = sock
        self.read_timeout = read_timeout
        self.lock = threading.Lock()
        self.unanswered: deque[_Pending] = deque()  # in the order written
        self.out = bytearray()  # request bytes not yet written
        self.inbox = bytearray()
        self.answered = 0
        self.closed = False
        self.idle_since = time.monotonic()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        sock.setblocking(False)
        self.thread = threading.Thread(target=self._run, name="sync-pipe", daemon=True)
        self.thread.start()

    def usable(self) -> bool:
        with self.lock:
            if self.closed:
                return False
            return bool(self.unanswered) or time.monotonic() - self.idle_since < MAX_IDLE_S

    def submit(self, pending: _Pending) -> bool:
        """Queue `pending` behind what is already on its way; False if the connection ended."""
        with self.lock:
            if self.closed:
                return False
            self.unanswered.append(pending)
            self.out += pending.data
        self._wake()
        return True

    def close(self) -> None:
        """Fail what is still unanswered; the connection's thread closes the socket."""
        self._end(TransportError("the sync connection was closed"))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # the thread has ended

    # The connection's thread ---------------------------------------------------------------

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        progress = time.monotonic()
        try:
            while True:
                with self.lock:
                    if self.closed:
                        return
                    want_write = bool(self.out)
                    waiting = bool(self.unanswered)
                selector.modify(
                    self.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
                )
                for key, _events in selector.select(timeout=0.5):
                    if key.fileobj is self._wake_r:
                        try:
                            self._wake_r.recv(4096)
                        except BlockingIOError:
                            pass
                moved = self._write() + self._read()
                now = time.monotonic()
                if moved or not waiting:
                    progress = now
                elif now - progress > self.read_timeout:
                    self._end(
                        TransportError(
                            f"sync request timed out: no bytes moved for {self.read_timeout:g} s"
                        )
                    )
                    return
        except (OSError, TransportError) as exc:
            error = exc if isinstance(exc, TransportError) else None
            self._end(error or self._closed_error(exc))
        finally:
            # Only this thread touches the sockets, so only it closes them.
            selector.close()
            for s in (self.sock, self._wake_r, self._wake_w):
                try:
                    s.close()
                except OSError:
                    pass

    def _closed_error(self, exc: BaseException) -> TransportError:
        """A connection that answered before and was then closed (the centre's idle timeout,
        or a proxy that serves one request a connection): what it left unanswered may go
        again on a new one (re-signed; the centre stores a resent batch once). A connection
        closed before its first answer is link trouble."""
        with self.lock:
            stale = self.answered > 0
        reason = exc.__class__.__name__
        if stale:
            return StaleConnection(f"sync request: kept connection was closed ({reason})")
        return TransportError(f"sync request failed: {reason}")

    def _write(self) -> int:
        written = 0
        while True:
            with self.lock:
                chunk = bytes(self.out[:_CHUNK])
            if not chunk:
                return written
            try:
                n = self.sock.send(chunk)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                return written
            with self.lock:
                del self.out[:n]
            written += n

    def _read(self) -> int:
        got = 0
        ended = False
        while True:
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            if not data:
                ended = True
                break
            got += len(data)
            self.inbox += data
            if len(self.inbox) > MAX_ANSWER_BYTES:
                raise TransportError("the centre's answer is too large")
        if got:
            self._take_answers()  # answers that arrived just before the end count
        if ended:
            raise ConnectionResetError("the centre closed the connection")
        return got

    def _take_answers(self) -> None:
        while True:
            end = self.inbox.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.inbox[:end]).decode("latin-1").split("\r\n")
            words = lines[0].split(" ", 2)
            if len(words) < 2 or not words[1].isdigit():
                raise TransportError("the centre's answer is not HTTP")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = headers.get("content-length", "")
            if not length.isdigit():
                raise TransportError("the centre's answer has no Content-Length")
            total = end + 4 + int(length)
            if len(self.inbox) < total:
                return
            body = bytes(self.inbox[end + 4 : total])
            del self.inbox[:total]
            with self.lock:
                if not self.unanswered:
                    raise TransportError("the centre answered a request not sent")
                pending = self.unanswered.popleft()
                self.answered += 1
                if not self.unanswered:
                    self.idle_since = time.monotonic()
            pending.status, pending.body = int(words[1]), body
            pending.done.set()
            if headers.get("connection", "").lower() == "close":
                # The centre (or a proxy in front of it) serves no more on this connection:
                # the requests behind this one were not answered, and go again on a new one.
                raise StaleConnection(
                    "sync request: the centre closed the connection after answering the one before"
                )

    def _end(self, error: TransportError) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            left = list(self.unanswered)
            self.unanswered.clear()
            self.out.clear()
        # The oldest unanswered request carries the failure; those behind it on the pipeline
        # only lost their turn: they go again on a new connection (a cut link fails that
        # connection's set-up, and they fail then), so one fault costs one batch, as it did
        # when each batch had a connection of its own.
        for n, pending in enumerate(left):
            pending.fail(
                error
                if n == 0 or isinstance(error, StaleConnection)
                else StaleConnection(
                    f"{pending.label}: the connection broke before its answer ({error})"
                )
            )


class PipelinedClient:
    """Requests to one centre, pipelined on one kept-alive connection (thread-safe).

    `request` has `HttpClient.request`'s contract: it returns this request's answer, raises
    TransportError for link trouble or a 5xx (every request still unanswered on a broken
    connection fails with it), StaleConnection when a kept connection turned out closed
    before answering anything, and Rejected for a 4xx.
    """

    def __init__(
        self, base_url: str, connect_timeout: float, read_timeout: float, tls_pin: str
    ) -> None:
        self.centre = PinnedCentre.parse(base_url, tls_pin)
        self.base_url = base_url
        self.host, self.port, self.prefix = self.centre.host, self.centre.port, self.centre.prefix
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.connections_opened = 0
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self.context = self.centre.tls_context()

    def _connect(self) -> _Connection:
        raw = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            sock = self.context.wrap_socket(raw)
        except BaseException:
            raw.close()
            raise
        try:
            self.centre.check(sock.getpeercert(binary_form=True))
        except PinMismatch:
            sock.close()
            raise
        self.connections_opened += 1
        return _Connection(sock, self.read_timeout)

    def _encode(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [
            f"{method} {self.prefix}{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/octet-stream",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        """Send one request behind those already on their way; wait for its answer."""
        data = self._encode(method, path, body, headers or {})
        with self._lock:
            conn = self._conn
            fresh = conn is None or not conn.usable()
            if fresh:
                if conn is not None:
                    conn.close()
                self._conn = None
                try:
                    conn = self._connect()
                except OSError as exc:  # ssl.SSLError is an OSError; PinMismatch goes up as is
                    kind = (
                        "timed out" if isinstance(exc, socket.timeout | TimeoutError) else "failed"
                    )
                    raise TransportError(
                        f"{method} {path} {kind}: {exc.__class__.__name__}"
                    ) from None
                self._conn = conn
            assert conn is not None
            pending = _Pending(method, path, data, len(body), fresh)
            if not conn.submit(pending):
                raise StaleConnection(f"{method} {path}: kept connection was closed")
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        wire = (
            len(body)
            + len(pending.body)
            + HEADER_BYTES
            + (HANDSHAKE_BYTES if pending.first_on_connection else 0)
        )
        if pending.status >= 500:
            raise TransportError(f"{method} {path}: centre answered {pending.status}")
        if pending.status >= 400:
            raise Rejected(pending.status, refusal_message(pending.body))
        return Response(pending.status, pending.body, wire)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

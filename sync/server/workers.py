"""Pre-fork serving: N worker processes, each a threaded cheroot server on the same port.

Each worker binds its own listening socket with SO_REUSEPORT, so the kernel spreads new
connections across workers (no accept lock, no shared socket). The parent only supervises:
it restarts a worker that dies, and on SIGTERM/SIGINT stops them all and waits.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType

from cheroot import wsgi

from appliance.tls_serving import serve_tls
from sync.server.tunnel import CHEROOT_REQUEST

log = logging.getLogger(__name__)


# Open tunnels one worker holds at most (each is a thread blocked on its box's connection).
MAX_TUNNELS = 1024


class PortBusy(Exception):
    """The address to serve on is taken or cannot be bound; the text says which."""


def _pick_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to `host:port` with SO_REUSEPORT; picks a port for 0.

    PortBusy when another program listens there. SO_REUSEPORT would let two servers of the
    same user share a port silently, so a probe without it goes first.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if port:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise PortBusy(f"cannot serve on {host}:{port}: {exc.strerror or exc} "
                       "(another program listens there? choose --port)") from None
    return sock


class TunnelGateway(wsgi.Gateway_10):
    """WSGI 1.0 gateway that also hands the app its cheroot request, so that the tunnel
    endpoint can take the connection over after its `101 Switching Protocols`."""

    # cheroot's stubs declare the base method as returning None; it returns the environ.
    def get_environ(self) -> dict[str, object]:  # type: ignore[override]
        environ = super().get_environ()
        environ[CHEROOT_REQUEST] = self.req
        return environ


def _worker(data_dir: Path, database: str | None, host: str, port: int, threads: int,
            certfile: Path | None, keyfile: Path | None, public_url: str = "") -> int:
    """One worker process: open the database, serve until SIGTERM."""
    from sync.server.app import create_app
    from sync.server.centre import Centre
    from sync.server.relay import RelayFront
    from sync.server.tunnel import TunnelEndpoint

    centre = Centre.open(data_dir, database)
    centre.db.close()
    stopping = threading.Event()
    app = TunnelEndpoint(RelayFront(create_app(centre), centre), centre, public_url, stopping)
    # Each open tunnel holds one thread (the pool grows by one for it, up to this many).
    server = wsgi.Server((host, port), app, numthreads=threads, max=threads + MAX_TUNNELS,
                         reuse_port=True, timeout=30)
    server.gateway = TunnelGateway
    if certfile and keyfile:
        serve_tls(server, str(certfile), str(keyfile))

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.start()
    return 0


def _spawn(*args: object) -> int:
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            code = _worker(*args)  # type: ignore[arg-type]
        finally:
            os._exit(code)
    return pid


def _wait_listening(host: str, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def serve_forked(data_dir: Path, database: str | None, host: str, port: int, workers: int,
                 threads: int, certfile: Path, keyfile: Path, public_url: str = "") -> int:
    """Run `workers` worker processes until SIGTERM; return the exit code."""
    holder = _pick_port(host, port)
    port = holder.getsockname()[1]
    args = (data_dir, database, host, port, threads, certfile, keyfile, public_url)
    pids = {_spawn(*args) for _ in range(workers)}
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        for pid in list(pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    ready = _wait_listening(host, port, time.monotonic() + 20)
    holder.close()
    if not ready:
        _on_signal(signal.SIGTERM, None)
    else:
        print(f"clinicbox-central serving on https://{host}:{port}/ with {workers} workers",
              flush=True)
    while pids:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        pids.discard(pid)
        if not stopping.is_set():
            log.warning("worker %s exited (status %s); starting a new one", pid, status)
            pids.add(_spawn(*args))
    return 0 if ready else 1

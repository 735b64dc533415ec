"""`clinicbox serve`: one process with the WSGI portal and the media loop thread."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from cheroot import wsgi

from appliance import __version__
from appliance.box import Box
from appliance.config import Settings
from appliance.discovery.advert import advertise_box
from appliance.errors import StartupError
from appliance.live_call import LiveCallFile
from appliance.locked_start import needs_unlock, wait_for_unlock
from appliance.media.adaptive import AdaptationSettings
from appliance.media.aiortc_glue.seams import restrict_host_addresses
from appliance.media.locality import on_link_networks, parse_networks
from appliance.media.ports import bind_media_ports, parse_port_range
from appliance.media.rooms import Rooms
from appliance.media_loop import MediaLoop
from appliance.sdnotify import notify, start_watchdog
from appliance.setup_code import SetupCode
from appliance.store import open_store
from appliance.store.store import passphrase_from_env
from appliance.tls import TLS12_CIPHERS, ensure_tls
from appliance.tls_serving import serve_tls
from sync.agent.service import start_sync_agent, start_tunnel

log = logging.getLogger(__name__)

# Enough threads for several long-lived event streams plus ordinary page loads on a Pi.
WSGI_THREADS = 16
# How long one read of a request may wait for bytes (cheroot's default is 10 s). A GPRS
# patient's call offer (13-38 kB up a 20 kbps link) stalled longer than that mid-upload while
# TCP backed off after queue drops, and the box dropped it unanswered: that patient never got
# into the call. Idle kept-alive connections wait in cheroot's selector, not in a thread.
READ_TIMEOUT_S = 30


def check_data_dir(data_dir: Path) -> None:
    """Create the data dir (0700) and prove it is writable, or say what to fix."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        # Left 0755 by an older release or a loose umask: private like the rest.
        for sub in ("state", "secrets", "tls"):
            if (data_dir / sub).is_dir():
                os.chmod(data_dir / sub, 0o700)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(
            f"data dir {data_dir} is not writable ({reason}); fix its owner/permissions "
            "or set CLINICBOX_DATA_DIR"
        ) from None


def check_port_free(settings: Settings) -> None:
    """Fail early, before any TLS work or log noise, when the portal port is taken."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            _raise_bind_error(settings, exc)


def _raise_bind_error(settings: Settings, exc: OSError) -> None:
    text = str(exc)
    if exc.errno == errno.EADDRINUSE or "in use" in text:
        raise StartupError(
            f"port {settings.port} on {settings.host} is already in use; stop the other "
            "service or set CLINICBOX_PORT"
        ) from None
    if exc.errno == errno.EACCES or "ermission denied" in text:
        raise StartupError(
            f"not allowed to listen on port {settings.port}; use a port above 1023 "
            "or grant CAP_NET_BIND_SERVICE"
        ) from None
    if exc.errno == errno.EADDRNOTAVAIL:
        raise StartupError(
            f"this box has no address {settings.host}; set CLINICBOX_HOST to one of its "
            "addresses or 0.0.0.0"
        ) from None
    raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {text}") from None


def _bind(settings: Settings, app: object, tls_cert: Path, tls_key: Path) -> wsgi.Server:
    server = wsgi.Server(
        (settings.host, settings.port),
        app,
        numthreads=WSGI_THREADS,
        server_name=settings.hostname,
        timeout=READ_TIMEOUT_S,
        shutdown_timeout=1,
    )
    context = serve_tls(server, str(tls_cert), str(tls_key))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    try:
        server.prepare()
    except OSError as exc:
        _raise_bind_error(settings, exc)
    return server


def _portal_url(settings: Settings) -> str:
    port = "" if settings.port == 443 else f":{settings.port}"
    return f"https://{settings.hostname}.local{port}/"


def adaptation_settings(settings: Settings) -> AdaptationSettings:
    """The SFU's view of the clinic: its LAN networks and its uplink."""
    networks = parse_networks(settings.media_lan_networks) or on_link_networks()
    uplink = settings.uplink_kbps * 1000 if settings.uplink_kbps else None
    return AdaptationSettings(tuple(networks), uplink)


def serve(settings: Settings) -> int:
    """Run the appliance until SIGTERM/SIGINT; return the process exit code."""
    from web import create_app  # imported late: the CLI's other commands stay light

    check_data_dir(settings.data_dir)
    check_port_free(settings)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    passphrase = passphrase_from_env()
    if needs_unlock(settings, passphrase):
        passphrase = wait_for_unlock(
            settings, stop, lambda app, cert, key: _bind(settings, app, cert, key)
        )
        if passphrase is None:
            log.info("stopped while locked")
            return 0
    # The store first: its keyring holds the CA key (wrapped by the same KEK as the records).
    store = open_store(settings, passphrase)
    tls = ensure_tls(settings.tls_dir, settings.hostname, store.keyring)
    setup_code = SetupCode(settings.secrets_dir / "setup-code.json")
    media = MediaLoop()
    box = Box(
        settings=settings,
        tls=tls,
        db=store.db,
        media=media,
        setup_code=setup_code,
        store=store,
        rooms=Rooms(adaptation_settings(settings)),
    )
    app = create_app(box)

    server = _bind(settings, app, tls.cert, tls.key)
    restrict_host_addresses(settings.media_addresses.split(","))
    bind_media_ports(media.loop, parse_port_range(settings.media_ports))
    media.start()
    media.on_shutdown(box.rooms.close_all)
    # For the updater, another process: it installs nothing while a call is live.
    live_call = LiveCallFile(box.rooms, settings.data_dir)
    media.call(live_call.start(), timeout=5)
    media.on_shutdown(live_call.stop)
    advertise_box(box)
    start_sync_agent(box)
    start_tunnel(box, app)
    start_watchdog(media)

    thread = threading.Thread(target=server.serve, name="wsgi", daemon=True)
    thread.start()
    bound_port = server.bind_addr[1]
    log.info("clinicbox %s serving on %s:%s", __version__, settings.host, bound_port)
    print(f"ClinicBox portal: {_portal_url(settings)} (also https://localhost:{bound_port}/)")
    if not (settings.data_dir / "state" / "provisioned").exists():
        code = setup_code.issue()
        print(f"One-time setup code: {code}  (open /setup on the portal and enter it)")
    sys.stdout.flush()
    notify("READY=1")

    while not stop.wait(0.5):
        if not thread.is_alive():
            log.error("web server thread stopped unexpectedly")
            break

    notify("STOPPING=1")
    # Stop accepting first, then close media (peer connections), then flush the database.
    server.stop()
    media.stop(timeout=max(0.5, settings.shutdown_timeout_s - 2.0))
    store.close()
    log.info("stopped cleanly")
    return 0

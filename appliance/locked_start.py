"""Starting a passphrase-protected box: serve the unlock page until the passphrase arrives.

In passphrase mode the record keys, the CA key and the cookie key are wrapped by a KEK that
only the passphrase gives, and nothing on the card holds it. Unless the service was given the
passphrase (`CLINICBOX_STORE_PASSPHRASE_FILE`), `clinicbox serve` first serves the locked
portal (`web.unlock`) with the existing server certificate, checks each passphrase entered
there against the keys file, and returns the one that fits; start-up then goes on as usual.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from cheroot import wsgi

from appliance.config import Settings
from appliance.errors import StartupError
from appliance.sdnotify import notify, watchdog_interval_s
from appliance.store.keyring import KEYS_FILE, Keyring, StoreLockedError
from appliance.tls import TlsMaterial

log = logging.getLogger(__name__)


def needs_unlock(settings: Settings, passphrase: str | None) -> bool:
    """True when the store is passphrase-protected and no passphrase was given."""
    if passphrase is not None:
        return False
    try:
        doc = json.loads((settings.secrets_dir / KEYS_FILE).read_bytes())
    except (OSError, ValueError):
        return False  # no keys yet (device mode is made) or unreadable (open_store says so)
    return isinstance(doc, dict) and doc.get("mode") == "passphrase"


def wait_for_unlock(
    settings: Settings,
    stop: threading.Event,
    bind: Callable[[object, Path, Path], wsgi.Server],
) -> str | None:
    """Serve the locked portal until a passphrase opens the keys; None when stopped first."""
    from web.unlock import create_unlock_app

    tls = TlsMaterial(
        settings.tls_dir / "ca.pem",
        settings.tls_dir / "server.pem",
        settings.tls_dir / "server.key",
    )
    if not (tls.cert.exists() and tls.key.exists() and tls.ca_cert.exists()):
        raise StartupError(
            "the record store is passphrase-protected and this box has no certificate to "
            "serve the unlock page; start it once with CLINICBOX_STORE_PASSPHRASE_FILE"
        )
    found: list[str] = []
    opened = threading.Event()
    lock = threading.Lock()

    def try_passphrase(passphrase: str) -> bool:
        with lock:  # one scrypt at a time: guessing cannot use every core
            try:
                Keyring.open(settings.secrets_dir, passphrase)
            except StoreLockedError:
                return False
            found.append(passphrase)
            opened.set()
            return True

    server = bind(create_unlock_app(try_passphrase, tls.ca_cert), tls.cert, tls.key)
    thread = threading.Thread(target=server.serve, name="wsgi-locked", daemon=True)
    thread.start()
    log.warning("record store is locked: enter the passphrase at /unlock")
    print(
        f"ClinicBox is locked: open https://{settings.hostname}.local:{settings.port}/unlock "
        "and enter the store passphrase"
    )
    sys.stdout.flush()
    notify("READY=1\nSTATUS=locked: waiting for the store passphrase at /unlock")
    pinging = watchdog_interval_s() is not None
    while not (opened.wait(0.5) or stop.is_set()):
        if pinging:
            notify("WATCHDOG=1")
    # Let the "unlocked" page reach the browser before the port changes hands.
    opened.wait(0.5)
    server.stop()
    thread.join(5)
    if not found:
        return None
    log.info("record store unlocked")
    return found[0]

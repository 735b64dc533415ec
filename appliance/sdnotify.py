"""systemd's notify protocol: READY=1, WATCHDOG=1 and STOPPING=1 over $NOTIFY_SOCKET.

The watchdog ping runs as a task on the media loop, so a hung loop stops the pings and
systemd restarts the service (WatchdogSec in clinicbox.service). Without $NOTIFY_SOCKET
(a developer's shell, the tests) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.media_loop import MediaLoop

log = logging.getLogger(__name__)


def notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send one notify datagram; True when a socket was configured and the send worked."""
    env = dict(os.environ) if env is None else env
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        # An abstract-namespace socket: the leading '@' stands for a NUL byte.
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", message.split("=")[0], exc)
        return False
    return True


def watchdog_interval_s(env: dict[str, str] | None = None) -> float | None:
    """Half of WatchdogSec (systemd's advice), or None when no watchdog is armed for us."""
    env = dict(os.environ) if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # the watchdog was set up for another process
    return int(usec) / 2_000_000


async def ping_watchdog(interval_s: float) -> None:
    """Send WATCHDOG=1 every `interval_s` from the loop this coroutine runs on, until cancelled."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)


def start_watchdog(media: MediaLoop) -> None:
    """Ping the systemd watchdog from `media`'s loop when WatchdogSec is set for us."""
    interval = watchdog_interval_s()
    if interval is None:
        return
    media.call(_spawn_pinger(interval), timeout=5)


async def _spawn_pinger(interval_s: float) -> None:
    # The task is cancelled with the others when the media loop shuts down.
    asyncio.get_running_loop().create_task(ping_watchdog(interval_s))

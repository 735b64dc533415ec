"""The UDP port range the SFU's ICE sockets bind in, so the firewall opens only that range.

aioice's `Connection` takes no port range: each host candidate comes from
`loop.create_datagram_endpoint(StunProtocol, local_addr=(address, 0))` in
`Connection.get_component_candidates`, on the loop the peer connection runs on.
`bind_media_ports(loop, ports)` wraps that one method of the media loop: a request for port 0
on a local address becomes a socket bound to a free port of the range (from a random start, so
successive calls do not walk the same ports), handed to asyncio as `sock=`. Endpoints with a
remote address (a TURN client's) or a fixed port (mDNS) are left as they are.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortRange:
    """An inclusive range of UDP ports."""

    low: int
    high: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


def parse_port_range(text: str) -> PortRange:
    """'LOW-HIGH' as a `PortRange`; ValueError saying what is wrong."""
    low_text, sep, high_text = text.strip().partition("-")
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ValueError(f"expected LOW-HIGH, e.g. 40000-40999, got {text!r}") from None
    if not sep or not 1024 <= low <= high <= 65535:
        raise ValueError(f"expected LOW-HIGH with 1024 <= LOW <= HIGH <= 65535, got {text!r}")
    return PortRange(low, high)


def bind_in_range(host: str, ports: PortRange) -> socket.socket:
    """A non-blocking UDP socket bound to `host` on a free port of `ports`."""
    family, _, _, _, sockaddr = socket.getaddrinfo(host, 0, type=socket.SOCK_DGRAM)[0]
    start = random.randrange(ports.size)
    for step in range(ports.size):
        port = ports.low + (start + step) % ports.size
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((sockaddr[0], port, *sockaddr[2:]))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        sock.setblocking(False)
        return sock
    log.warning("no free UDP port left in media_ports %s for %s", ports, host)
    raise OSError(errno.EADDRINUSE, f"no free UDP port in media_ports {ports}")


def bind_media_ports(loop: asyncio.AbstractEventLoop, ports: PortRange) -> None:
    """Make ICE host sockets created on `loop` bind in `ports` (idempotent, last range wins)."""
    original = getattr(loop, "_clinicbox_unranged_endpoint", None)
    if original is None:
        original = loop.create_datagram_endpoint
        loop._clinicbox_unranged_endpoint = original  # type: ignore[attr-defined]

    async def create_datagram_endpoint(
        protocol_factory: Any, local_addr: Any = None, remote_addr: Any = None, **kwargs: Any
    ) -> Any:
        if (
            local_addr is not None
            and remote_addr is None
            and kwargs.get("sock") is None
            and local_addr[1] == 0
        ):
            sock = bind_in_range(local_addr[0], ports)
            return await original(protocol_factory, sock=sock)
        return await original(
            protocol_factory, local_addr=local_addr, remote_addr=remote_addr, **kwargs
        )

    loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign]

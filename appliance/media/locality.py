"""Whether a participant sits on the clinic's LAN or reaches the box over a remote link.

LAN participants start at full quality and do not draw on the clinic's uplink; remote ones
start conservatively (a weak link must not be flooded before its first receiver report) and
share the uplink budget. The address is the one media really flows from: the nominated ICE
pair's remote address, known once the peer connection is connected.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ROUTE_TABLE = Path("/proc/net/route")


class BadNetworks(ValueError):
    """A LAN network setting that is not a comma-separated list of CIDR networks."""


def parse_networks(text: str) -> list[Network]:
    """'10.0.0.0/24, 192.168.1.0/24' as networks; an empty string is an empty list."""
    networks = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise BadNetworks(f"{part!r} is not a network like 192.168.1.0/24") from None
    return networks


def on_link_networks(route_table: Path = ROUTE_TABLE) -> list[Network]:
    """The IPv4 networks the box reaches without a gateway (its own LAN segments)."""
    try:
        lines = route_table.read_text().splitlines()[1:]
    except OSError:
        return []
    networks = []
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[0] == "lo":
            continue
        destination, gateway, mask = (int(fields[i], 16) for i in (1, 2, 7))
        if gateway != 0 or destination == 0:
            continue
        address = socket.inet_ntoa(struct.pack("<I", destination))
        netmask = socket.inet_ntoa(struct.pack("<I", mask))
        networks.append(ipaddress.ip_network(f"{address}/{netmask}", strict=False))
    return networks


def is_lan(address: str | None, networks: Iterable[Network]) -> bool:
    """True if `address` is loopback or lies in one of `networks` (None: not LAN)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_loopback or any(ip in network for network in networks)


def peer_address(pc: RTCPeerConnection) -> str | None:
    """The remote address of the nominated ICE pair (None until connected).

    aiortc does not expose it; this reads aioice's `Connection._nominated` through the
    transceiver's ICE transport (checked by `tests/media/test_aiortc_seams.py`).
    """
    for transceiver in pc.getTransceivers():
        ice = transceiver.sender.transport.transport
        pairs = getattr(ice._connection, "_nominated", {})
        for pair in pairs.values():
            return str(pair.remote_addr[0])
    return None


def nominated_pair_types(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """Candidate types (local, remote) of the nominated ICE pair, e.g. ("relay", "host");
    None until connected. Read like `peer_address`."""
    for transceiver in pc.getTransceivers():
        ice = transceiver.sender.transport.transport
        for pair in getattr(ice._connection, "_nominated", {}).values():
            return str(pair.local_candidate.type), str(pair.remote_candidate.type)
    return None

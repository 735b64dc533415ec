"""Whether a participant sits on the clinic's LAN or reaches the box over a remote link.

LAN participants start at full quality and do not draw on the clinic's uplink; remote ones
start conservatively (a weak link must not be flooded before its first receiver report) and
share the uplink budget. The address is the one media really flows from: the nominated ICE
pair's remote address, known once the peer connection is connected. That is the address the
box sees packets from, whatever the browser put in its candidates: Chromium hides its host
addresses behind `<uuid>.local` mDNS names, and a LAN browser whose names the box cannot
resolve still reaches it from its real LAN address (as a peer-reflexive candidate).

On-link networks come from the kernel's IPv4 and IPv6 route tables, so a dual-stack LAN counts
whichever family a browser happens to use (a global prefix, a ULA such as fd00::/64); link-local
addresses (fe80::/10, 169.254.0.0/16) are on the box's own segment by definition.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.media.aiortc_glue.transport import nominated_pair

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ROUTE_TABLE = Path("/proc/net/route")
IPV6_ROUTE_TABLE = Path("/proc/net/ipv6_route")

# Route flags in /proc/net/ipv6_route (linux/ipv6_route.h).
_RTF_UP = 0x0001
_RTF_GATEWAY = 0x0002
_RTF_REJECT = 0x0200
_RTF_LOCAL = 0x80000000


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


def on_link_networks(
    route_table: Path = ROUTE_TABLE, ipv6_route_table: Path = IPV6_ROUTE_TABLE
) -> list[Network]:
    """The IPv4 and IPv6 networks the box reaches without a gateway (its own LAN segments)."""
    return on_link_ipv4_networks(route_table) + on_link_ipv6_networks(ipv6_route_table)


def on_link_ipv4_networks(route_table: Path = ROUTE_TABLE) -> list[Network]:
    """The IPv4 networks of the main route table that need no gateway (not loopback)."""
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


def on_link_ipv6_networks(route_table: Path = IPV6_ROUTE_TABLE) -> list[Network]:
    """The IPv6 prefixes the box reaches without a gateway: global, ULA and link-local.

    Default routes, routes via a gateway, the box's own addresses (local /128s), multicast,
    unreachable routes and loopback are left out.
    """
    try:
        lines = route_table.read_text().splitlines()
    except OSError:
        return []
    networks: list[Network] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[9] == "lo":
            continue
        try:
            destination = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            prefix_len = int(fields[1], 16)
            next_hop = int(fields[4], 16)
            flags = int(fields[8], 16)
        except ValueError:
            continue
        if not flags & _RTF_UP or flags & (_RTF_GATEWAY | _RTF_REJECT | _RTF_LOCAL):
            continue
        if next_hop or prefix_len == 0 or destination.is_multicast:
            continue
        network = ipaddress.IPv6Network(f"{destination}/{prefix_len}", strict=False)
        if network not in networks:
            networks.append(network)
    return networks


def is_lan(address: str | None, networks: Iterable[Network]) -> bool:
    """True if `address` is loopback, link-local or in one of `networks` (None: not LAN).

    An IPv4-mapped IPv6 address (::ffff:a.b.c.d, from a dual-stack socket) is judged as the
    IPv4 address it carries. A name (an mDNS `.local` candidate never resolved) is not an
    address the box saw, so it decides nothing: False.
    """
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or any(ip in network for network in networks)


def peer_address(pc: RTCPeerConnection) -> str | None:
    """The remote address of the nominated ICE pair (None until connected).

    aiortc does not expose it; `aiortc_glue.transport.nominated_pair` reads it from aioice.
    """
    for transceiver in pc.getTransceivers():
        pair = nominated_pair(transceiver.sender.transport.transport)
        if pair is not None:
            return str(pair.remote_addr[0])
    return None


def nominated_pair_types(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """Candidate types (local, remote) of the nominated ICE pair, e.g. ("relay", "host");
    None until connected. Read like `peer_address`."""
    for transceiver in pc.getTransceivers():
        pair = nominated_pair(transceiver.sender.transport.transport)
        if pair is not None:
            return str(pair.local_candidate.type), str(pair.remote_candidate.type)
    return None

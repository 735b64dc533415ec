"""Who is on the clinic's LAN: configured networks, the box's own on-link routes, loopback."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from appliance.media.locality import BadNetworks, is_lan, on_link_networks, parse_networks

ROUTES = """Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT
eth0\t00000000\t0108A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0008A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wlan0\t00004D0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0
"""

# /proc/net/ipv6_route of a dual-stack box: a ULA and link-local on eth0, a default route and a
# routed prefix via a gateway, its own address (local), multicast and loopback.
_Z = "0" * 32
_ROWS6 = [  # destination, prefix length, next hop, flags, device
    ("fd00::", "40", "::", "00000001", "eth0"),
    ("fe80::", "40", "::", "00000001", "eth0"),
    ("2001:db8::", "30", "fd00::1", "00000003", "eth0"),
    ("::", "00", "fd00::1", "00000003", "eth0"),
    ("::1", "80", "::", "80200001", "lo"),
    ("fd00::2", "80", "::", "80200001", "eth0"),
    ("ff00::", "08", "::", "00000001", "eth0"),
]


def _hex(address: str) -> str:
    return ipaddress.IPv6Address(address).packed.hex()


IPV6_ROUTES = "".join(
    f"{_hex(d)} {n} {_Z} 00 {_hex(h)} 00000100 00000001 00000000 {f} {dev}\n"
    for d, n, h, f, dev in _ROWS6
)


def test_on_link_networks_are_read_from_the_route_table(tmp_path: Path) -> None:
    table, table6 = tmp_path / "route", tmp_path / "ipv6_route"
    table.write_text(ROUTES)
    table6.write_text(IPV6_ROUTES)
    # Default routes, routes via a gateway, the box's own addresses, multicast and loopback
    # are not the clinic's LAN; IPv6 on-link prefixes (ULA, link-local) are.
    assert [str(n) for n in on_link_networks(table, table6)] == [
        "192.168.8.0/24", "10.77.0.0/16", "fd00::/64", "fe80::/64",
    ]
    missing = tmp_path / "missing"
    assert on_link_networks(missing, missing) == []


def test_lan_membership() -> None:
    networks = parse_networks("192.168.8.0/24, 10.77.0.5/32")
    assert is_lan("192.168.8.40", networks) and is_lan("10.77.0.5", networks)
    assert not is_lan("10.77.0.6", networks) and not is_lan("203.0.113.9", networks)
    assert is_lan("127.0.0.1", []) and is_lan("::1", [])
    assert not is_lan(None, networks) and not is_lan("not-an-address", networks)
    # Link-local is the box's own segment in either family; an IPv4-mapped address is judged
    # as IPv4; an unresolved mDNS name is no address at all.
    assert is_lan("fe80::1c2:3ff:fe4:5%eth0", []) and is_lan("169.254.7.9", [])
    assert is_lan("::ffff:192.168.8.40", networks) and not is_lan("::ffff:203.0.113.9", networks)
    assert not is_lan("0f6c2b7e-0d6a-4c7e-9b1e-3f1d2c4b5a69.local", networks)
    assert parse_networks("") == []
    with pytest.raises(BadNetworks, match="'clinic' is not a network"):
        parse_networks("10.0.0.0/8, clinic")

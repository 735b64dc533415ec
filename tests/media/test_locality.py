"""Who is on the clinic's LAN: configured networks, the box's own on-link routes, loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.media.locality import BadNetworks, is_lan, on_link_networks, parse_networks

ROUTES = """Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT
eth0\t00000000\t0108A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0008A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wlan0\t00004D0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0
"""


def test_on_link_networks_are_read_from_the_route_table(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(ROUTES)
    # The default route (via a gateway) and loopback are not the clinic's LAN.
    assert [str(n) for n in on_link_networks(table)] == ["192.168.8.0/24", "10.77.0.0/16"]
    assert on_link_networks(tmp_path / "missing") == []


def test_lan_membership() -> None:
    networks = parse_networks("192.168.8.0/24, 10.77.0.5/32")
    assert is_lan("192.168.8.40", networks) and is_lan("10.77.0.5", networks)
    assert not is_lan("10.77.0.6", networks) and not is_lan("203.0.113.9", networks)
    assert is_lan("127.0.0.1", []) and is_lan("::1", [])
    assert not is_lan(None, networks) and not is_lan("not-an-address", networks)
    assert parse_networks("") == []
    with pytest.raises(BadNetworks, match="'clinic' is not a network"):
        parse_networks("10.0.0.0/8, clinic")

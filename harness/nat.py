"""NAT routers for the lab: a clinic behind carrier-grade NAT, a patient behind a home router.

`masquerade random` gives every new flow a random source port: the mapping depends on the
destination (endpoint-dependent, "symmetric"), as carrier-grade NAT often behaves, so a
server-reflexive candidate learnt from one server is useless towards another peer and two
such hosts can only meet through a TURN relay. Nothing is forwarded inward unless it answers a
flow from inside (conntrack), except what `forward_tcp_to` names: a stand-in for the centre's
tunnel, which carries the box's signalling in the field. `drop_udp` makes a network that lets
only TCP out (as some hotel and corporate networks do).
"""

from __future__ import annotations

import subprocess

from harness.lab import Host, Lab, lab_prefix

WAN = "eth0"


def table_name() -> str:
    """The nftables table the lab's routers use (named after the lab's prefix)."""
    return f"{lab_prefix()}nat"


def nat_rules(nat: bool = True, drop_udp: bool = False, forward_tcp_to: str | None = None) -> str:
    """The nft script for a router whose uplink is `eth0` and whose LAN is `lan0`."""
    table = table_name()
    forward = []
    if drop_udp:
        forward.append(f'oifname "{WAN}" meta l4proto udp drop')
        forward.append(f'iifname "{WAN}" meta l4proto udp drop')
    if nat:
        forward.append(f'iifname "{WAN}" ct state established,related accept')
        if forward_tcp_to:
            forward.append(f'iifname "{WAN}" ct status dnat meta l4proto tcp accept')
        forward.append(f'iifname "{WAN}" drop')
    prerouting = []
    if nat and forward_tcp_to:
        prerouting.append(f'iifname "{WAN}" meta l4proto tcp dnat to {forward_tcp_to}')
    postrouting = [f'oifname "{WAN}" masquerade random'] if nat else []
    return (
        "\n".join(
            [
                f"table ip {table} {{",
                "  chain forward { type filter hook forward priority filter; policy accept;",
                *[f"    {rule}" for rule in forward],
                "  }",
                "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;",
                *[f"    {rule}" for rule in prerouting],
                "  }",
                "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;",
                *[f"    {rule}" for rule in postrouting],
                "  }",
                "}",
            ]
        )
        + "\n"
    )


def configure_router(
    lab: Lab,
    router: Host,
    nat: bool = True,
    drop_udp: bool = False,
    forward_tcp_to: str | None = None,
) -> None:
    """Load the router's rules (replacing earlier ones): NAT or plain routing, UDP or not."""
    table = table_name()
    lab.run(router, ["nft", "delete", "table", "ip", table])  # absent the first time
    done = lab.run(router, ["nft", "-f", "-"], input=nat_rules(nat, drop_udp, forward_tcp_to))
    if done.returncode != 0:
        raise RuntimeError(f"nft in {router.name}: {done.stderr.strip()[-300:]}")


def add_route(lab: Lab, host: Host, network: str, via: str) -> None:
    """A route on `host` (without NAT the internet must know where the private LANs are)."""
    done = lab.run(host, ["ip", "route", "replace", network, "via", via])
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, "ip route", done.stderr)

"""coturn beside the centre: its shared secret, its configuration, and what boxes are told.

coturn checks TURN REST API credentials (`use-auth-secret`) against `static-auth-secret`;
boxes mint those credentials per seat (appliance.media.turn), so every box needs the secret.
The centre keeps it in its data dir (`turn-secret`, 0600) and sends it with the relay's URLs
to every box as a signed down-sync change of type `turn` (pinned HTTPS carries it).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import OperatorError
from appliance.files import write_private

SECRET_FILE = "turn-secret"
CHANGE_KIND = "turn"
CHANGE_KEY = "relay"

#: Peers coturn must never relay to: private, loopback, link-local, CGNAT, multicast and
#: reserved ranges. Security first (nobody may use the relay to reach the centre's own
#: network), and coturn drops a whole allocation when sending to a private peer address
#: fails with ENETUNREACH, which ICE checks towards a patient's host candidates would cause.
DENIED_PEER_RANGES_V4 = (
    "0.0.0.0-0.255.255.255",
    "10.0.0.0-10.255.255.255",
    "100.64.0.0-100.127.255.255",
    "127.0.0.0-127.255.255.255",
    "169.254.0.0-169.254.255.255",
    "172.16.0.0-172.31.255.255",
    "192.0.0.0-192.0.0.255",
    "192.168.0.0-192.168.255.255",
    "198.18.0.0-198.19.255.255",
    "224.0.0.0-255.255.255.255",
)
#: The same for IPv6 peers (an allocation made for IPv6 relays only to IPv6 peers): loopback,
#: the encodings that carry an IPv4 address (v4-mapped, NAT64, 6to4, Teredo: they would
#: reach the private IPv4 ranges above another way), discard, documentation, unique-local,
#: link-local, site-local and multicast. Written to suit coturn 4.6 (coturn/coturn
#: src/client/ns_turn_ioaddr.c at 4.6.1), which has two traps:
#: - a range whose low end is `::` counts as open below, and an IPv4 peer compares below any
#:   IPv6 address, so such a range (e.g. "::-::1") denies every IPv4 peer: none starts at ::;
#: - it compares IPv6 addresses byte by byte (each byte between the bounds' bytes), which
#:   is the range only for whole prefixes: every range is one CIDR block.
DENIED_PEER_NETWORKS_V6 = (
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/32",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
)


def _span(network: str) -> str:
    block = ipaddress.ip_network(network)
    return f"{block[0]}-{block[-1]}"


DENIED_PEER_RANGES = (
    *DENIED_PEER_RANGES_V4,
    *(_span(n) for n in DENIED_PEER_NETWORKS_V6),
)
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]{0,252})$")


def turn_secret(data_dir: Path) -> str:
    """coturn's static-auth-secret, made (0600) on first use and kept."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32).encode())
    return path.read_text().strip()


@dataclass(frozen=True)
class TurnListen:
    """Where coturn listens and how boxes and browsers reach it."""

    public_host: str  # the name (or address) boxes and browsers dial
    port: int = 3478  # TURN over UDP and TCP
    tls_port: int = 443  # TURN over TLS: passes firewalls that allow only HTTPS
    listening_ip: str | None = None
    min_port: int = 49152
    max_port: int = 65535

    def __post_init__(self) -> None:
        host = self.public_host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if not _HOST_RE.match(host):
                raise OperatorError(
                    f"--public-host {host!r} is not a host name or address"
                ) from None
        else:
            # Boxes sit behind IPv4 carrier-grade NAT and use the one URL that allocates: an
            # IPv6-only relay address would be handed out and never work for them.
            if address.version == 6:
                raise OperatorError(
                    f"--public-host {host!r} is an IPv6 address: give a name with A (and AAAA) "
                    "records or the relay's IPv4 address"
                )
        if self.listening_ip is not None:
            try:
                listening = ipaddress.ip_address(self.listening_ip)
            except ValueError:
                raise OperatorError(
                    f"--listening-ip {self.listening_ip!r} is not an address"
                ) from None
            if listening.version == 6:
                raise OperatorError(
                    "--listening-ip must be an IPv4 address (leave it out to listen on both "
                    "families)"
                )
        if self.port == self.tls_port:
            raise OperatorError("--port and --tls-port must differ")
        if not 1024 <= self.min_port < self.max_port <= 65535:
            raise OperatorError("relay ports must satisfy 1024 <= --min-port < --max-port")

    def urls(self) -> list[str]:
        """The URLs boxes try in this order (aiortc uses one; browsers try all)."""
        host = self.public_host
        return [
            f"turn:{host}:{self.port}?transport=udp",
            f"turn:{host}:{self.port}?transport=tcp",
            f"turns:{host}:{self.tls_port}?transport=tcp",
        ]


def render_config(listen: TurnListen, secret: str, realm: str, cert: Path, pkey: Path) -> str:
    """coturn's turnserver.conf for the centre's relay."""
    lines = [
        "# Generated by `clinicbox-central turn-config`; edit the command's flags, not this.",
        f"listening-port={listen.port}",
        f"tls-listening-port={listen.tls_port}",
        *([f"listening-ip={listen.listening_ip}"] if listen.listening_ip else []),
        f"min-port={listen.min_port}",
        f"max-port={listen.max_port}",
        f"realm={realm}",
        "fingerprint",
        "use-auth-secret",
        f"static-auth-secret={secret}",
        f"cert={cert}",
        f"pkey={pkey}",
        "no-tlsv1",
        "no-tlsv1_1",
        "no-cli",
        "no-multicast-peers",
        "no-software-attribute",
        # Per username (one seat's browser, or the box for that seat): a browser allocates on
        # UDP, TCP and TLS at once, and a reconnect does again before the old ones expire.
        "user-quota=12",
        "stale-nonce=600",
        "simple-log",
        *[f"denied-peer-ip={r}" for r in DENIED_PEER_RANGES],
    ]
    return "\n".join(lines) + "\n"


def write_config(path: Path, text: str) -> None:
    """Write the config (it holds the secret) readable by its owner only."""
    write_private(path, text.encode())

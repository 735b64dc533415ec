"""TURN for remote seats: the centre's coturn relays media the box and a patient cannot
exchange directly (both sit behind NATs that map each destination to a new port).

The centre hands every box its TURN service (URLs and coturn's `static-auth-secret`) as a
signed down-sync change (`type "turn"`, kept in `state/central/turn.json`, 0600). The box
mints credentials per seat with the TURN REST API scheme coturn checks with
`use-auth-secret`: username `<expiry>:<opaque seat label>`, password
`base64(HMAC-SHA1(secret, username))`; they expire with the seat's join token. Browsers get
every URL (they try them all); the box's own aiortc peers get one, because aiortc uses only
the first TURN URL it is given, so `RelayChooser` probes them in order and remembers the first
that allocates. LAN seats get no TURN at all: their media never hairpins through the centre.
DTLS-SRTP runs end to end through the relay, which sees only encrypted packets.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aioice import stun, turn
from aiortc import RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

log = logging.getLogger(__name__)

STATE_FILE = Path("state") / "central" / "turn.json"
CHANGE_KEY = "relay"
#: A TURN URL the box accepts: turn: or turns:, a host, an explicit port, a transport.
_URL_RE = re.compile(r"^turns?:[A-Za-z0-9.\-\[\]:]+:\d{1,5}(\?transport=(udp|tcp))?$")
PROBE_TIMEOUT_S = 3.0
#: How long a preferred transport (UDP first) may still answer once a later one allocated.
PREFER_S = 1.0
#: How long a transport that allocated is trusted before it is probed again.
CHOICE_TTL_S = 600.0


class BadTurnService(ValueError):
    """The centre's TURN description is unusable; the message says what is wrong."""


@dataclass(frozen=True)
class TurnService:
    """The centre's TURN relay: URLs in the order a box should try them, and the secret."""

    urls: tuple[str, ...]
    secret: str

    @classmethod
    def from_body(cls, body: Any) -> TurnService:
        """Check a down-sync body `{"urls": [...], "secret": "..."}`."""
        if not isinstance(body, dict):
            raise BadTurnService("the TURN description must be an object")
        urls, secret = body.get("urls"), body.get("secret")
        if (
            not isinstance(urls, list)
            or not urls
            or not all(isinstance(u, str) and _URL_RE.match(u) for u in urls)
        ):
            raise BadTurnService("urls must list turn:/turns: URLs with a host and a port")
        if not isinstance(secret, str) or len(secret) < 16:
            raise BadTurnService("secret must be a string of at least 16 characters")
        return cls(tuple(urls), secret)


def load_service(data_dir: Path) -> TurnService | None:
    """The TURN service the centre last sent this box, or None (none sent, or unusable)."""
    try:
        kept = json.loads((data_dir / STATE_FILE).read_text())
        return TurnService.from_body(kept[CHANGE_KEY]["body"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the centre's TURN description: %s", exc)
        return None


def seat_label(participant_id: str) -> str:
    """An opaque label for a seat: coturn logs usernames, and they must name nobody."""
    return hashlib.sha256(participant_id.encode()).hexdigest()[:16]


def credentials(secret: str, participant_id: str, expires_at: float) -> tuple[str, str]:
    """TURN REST API credentials for one seat, valid until `expires_at` (epoch seconds)."""
    username = f"{int(expires_at)}:{seat_label(participant_id)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


@dataclass(frozen=True)
class TurnGrant:
    """One remote seat's right to the relay: which service, for whom, until when."""

    service: TurnService
    participant_id: str
    expires_at: float

    def browser_ice_servers(self) -> list[dict[str, Any]]:
        """`RTCPeerConnection`'s iceServers for a browser: every URL, one credential."""
        username, password = credentials(self.service.secret, self.participant_id, self.expires_at)
        return [{"urls": list(self.service.urls), "username": username, "credential": password}]

    def box_credentials(self) -> tuple[str, str]:
        """The box's own credentials for this seat: a label of their own, so coturn's
        per-user allocation quota counts the box's allocations apart from the browser's."""
        return credentials(self.service.secret, f"{self.participant_id}#box", self.expires_at)

    def ice_server(self, url: str) -> RTCIceServer:
        """The box's aiortc ice server for `url` (aiortc reads only the first TURN URL)."""
        username, password = self.box_credentials()
        return RTCIceServer(urls=url, username=username, credential=password)


async def allocates(
    url: str, username: str, password: str, timeout: float = PROBE_TIMEOUT_S
) -> bool:
    """Whether the TURN server at `url` gives these credentials an allocation now."""
    parsed = parse_stun_turn_uri(url)
    tls: bool | ssl.SSLContext = parsed["scheme"] == "turns"
    try:
        relay, _ = await asyncio.wait_for(
            turn.create_turn_endpoint(
                asyncio.DatagramProtocol,
                (parsed["host"], parsed["port"]),
                username,
                password,
                ssl=tls,
                transport=parsed["transport"],
            ),
            timeout,
        )
    except (TimeoutError, OSError, stun.TransactionError) as exc:
        log.warning("TURN via %s did not allocate: %s", url, type(exc).__name__)
        return False
    relay.close()
    return True


async def first_allocating(
    urls: tuple[str, ...] | list[str], username: str, password: str, grace_s: float = PREFER_S
) -> str | None:
    """The most preferred of `urls` (earliest listed) that gives these credentials an
    allocation, or None. All are probed at once: where UDP is blocked its probe only times
    out, so once a later URL has allocated, earlier ones get `grace_s` more to answer."""
    loop = asyncio.get_running_loop()
    probes = [asyncio.ensure_future(allocates(url, username, password)) for url in urls]

    def best() -> tuple[int | None, bool]:
        """Index of the first URL that allocated, and whether every earlier one is done."""
        for index, probe in enumerate(probes):
            if not probe.done():
                continue
            if probe.result():
                return index, all(p.done() for p in probes[:index])
        return None, False

    deadline: float | None = None
    try:
        pending = set(probes)
        while pending:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, pending = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            index, settled = best()
            if index is not None and (settled or not done):
                return urls[index]
            if index is not None and deadline is None:
                deadline = loop.time() + grace_s
        index, _ = best()
        return None if index is None else urls[index]
    finally:
        for probe in probes:
            probe.cancel()


class RelayChooser:
    """Picks the one TURN URL the box's aiortc peers use, and remembers what worked."""

    def __init__(self, ttl_s: float = CHOICE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._chosen: tuple[TurnService, str, float] | None = None
        self._lock = asyncio.Lock()

    async def choose(self, grant: TurnGrant) -> str | None:
        """The first URL of the grant's service that allocates (cached); None if none does."""
        async with self._lock:
            now = time.monotonic()
            if self._chosen is not None:
                service, url, at = self._chosen
                if service == grant.service and now - at < self.ttl_s:
                    return url
            username, password = grant.box_credentials()
            allocating = await first_allocating(grant.service.urls, username, password)
            if allocating is not None:
                self._chosen = (grant.service, allocating, now)
                return allocating
            self._chosen = None
            log.warning(
                "no TURN transport of the centre allocates; remote seats get host candidates only"
            )
            return None

    def forget(self) -> None:
        """The chosen URL failed in a real gathering: probe again next time."""
        self._chosen = None

    async def ice_servers(self, grant: TurnGrant | None) -> list[RTCIceServer]:
        """aiortc ice servers for a seat: none for a LAN seat, the chosen TURN URL otherwise."""
        if grant is None:
            return []
        url = await self.choose(grant)
        return [] if url is None else [grant.ice_server(url)]

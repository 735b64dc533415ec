"""The box's adverts: `_clinicbox._tcp` and `_https._tcp`, kept in step with its state.

TXT keys are short and public: `txtvers`, `id` (device key fingerprint), `state`
(unclaimed/claimed), `api` and `ver`. Never a secret, never a clinic or person's name.
The advertiser runs on the media loop (python-zeroconf's asyncio API) and polls the
provisioning state so a claim made by the web wizard or the CLI shows up within seconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from appliance import __version__

if TYPE_CHECKING:
    from appliance.box import Box

log = logging.getLogger(__name__)

SERVICE_TYPE = "_clinicbox._tcp.local."
HTTPS_TYPE = "_https._tcp.local."
TXT_VERSION = "1"
API_VERSION = "1"
# How often the advertiser re-reads the claim state and the LAN addresses.
STATE_POLL_S = 1.0


def advert_txt(fingerprint: str, state: str) -> dict[str, str]:
    """The TXT record: only these keys, ever."""
    if state not in ("unclaimed", "claimed"):
        raise ValueError(f"unknown advert state {state!r}")
    return {
        "txtvers": TXT_VERSION,
        "id": fingerprint,
        "state": state,
        "api": API_VERSION,
        "ver": __version__,
    }


def lan_addresses(
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> list[str]:
    """The addresses to advertise: IPv4, not loopback, not link-local."""
    return [
        str(a)
        for a in candidates
        if a.version == 4 and not a.is_loopback and not a.is_link_local
    ]


class Advertiser:
    """Registers both services on the LAN addresses; follows state and address changes."""

    def __init__(
        self,
        instance: str,
        hostname: str,
        port: int,
        fingerprint: str,
        read_addresses: Callable[[], list[str]],
        read_state: Callable[[], str],
    ) -> None:
        self.instance = instance
        self.hostname = hostname
        self.port = port
        self.fingerprint = fingerprint
        self._read_addresses = read_addresses
        self.addresses = read_addresses()
        self._read_state = read_state
        self.state = read_state()
        self._zc: AsyncZeroconf | None = None
        self._infos: list[AsyncServiceInfo] = []
        self._poller: asyncio.Task[None] | None = None

    def _build(self) -> list[AsyncServiceInfo]:
        txt = advert_txt(self.fingerprint, self.state)
        server = f"{self.hostname}.local."
        return [
            AsyncServiceInfo(
                kind,
                f"{self.instance}.{kind}",
                port=self.port,
                properties=txt,
                server=server,
                parsed_addresses=self.addresses,
            )
            for kind in (SERVICE_TYPE, HTTPS_TYPE)
        ]

    async def start(self) -> None:
        """Advertise on the current LAN addresses, then follow address and state changes."""
        if self.addresses:
            await self._open()
        else:
            log.warning("no LAN address to advertise on yet; waiting for one")
        self._poller = asyncio.get_running_loop().create_task(self._follow_state())

    async def _open(self) -> None:
        # Join the multicast group on the LAN interfaces and register both services.
        self._zc = AsyncZeroconf(interfaces=self.addresses, ip_version=IPVersion.V4Only)
        self._infos = self._build()
        for info in self._infos:
            # allow_name_change: two boxes with the same hostname both stay visible.
            await (await self._zc.async_register_service(info, allow_name_change=True))
        log.info("advertising %s on %d address(es), state %s", SERVICE_TYPE,
                 len(self.addresses), self.state)

    async def update(self, state: str) -> None:
        """Announce a new `state` (unclaimed/claimed)."""
        if self._zc is None or state == self.state:
            return
        self.state = state
        fresh = self._build()
        for old, new in zip(self._infos, fresh, strict=True):
            new.name = old.name  # keep any name the conflict resolution chose
            await (await self._zc.async_update_service(new))
        self._infos = fresh
        log.info("advert state now %s", state)

    async def _follow_state(self) -> None:
        while True:
            await asyncio.sleep(STATE_POLL_S)
            try:
                addresses = self._read_addresses()
                if addresses != self.addresses:
                    # A new DHCP lease or a moved cable: re-advertise on what is there now.
                    await self._withdraw()
                    self.addresses = addresses
                    self.state = self._read_state()
                    if addresses:
                        await self._open()
                    continue
                await self.update(self._read_state())
            except Exception as exc:  # a failed re-announce must not stop later ones
                log.warning("advert update failed: %s", exc)

    async def close(self) -> None:
        """Withdraw the adverts (goodbye packets) and leave the multicast group."""
        if self._poller is not None:
            self._poller.cancel()
        await self._withdraw()

    async def _withdraw(self) -> None:
        if self._zc is None:
            return
        try:
            await self._zc.async_unregister_all_services()
        finally:
            await self._zc.async_close()
            self._zc = None


def advertise_box(box: Box) -> Advertiser | None:
    """Start the adverts for a serving box on its media loop; withdrawn at loop shutdown.

    Returns None (and advertises nothing) when `discovery_enabled` is off.
    """
    from appliance.identity import DeviceIdentity
    from appliance.provisioning_state import read_state
    from appliance.tls import local_ip_addresses

    settings = box.settings
    if not settings.discovery_enabled:
        return None
    identity = DeviceIdentity.load_or_create(settings.secrets_dir)
    advertiser = Advertiser(
        instance=f"ClinicBox {identity.fingerprint[:6]}",
        hostname=settings.hostname,
        port=settings.port,
        fingerprint=identity.fingerprint,
        read_addresses=lambda: lan_addresses(local_ip_addresses()),
        read_state=lambda: read_state(settings).advert_state,
    )
    box.media.call(advertiser.start(), timeout=10)
    box.media.on_shutdown(advertiser.close)
    return advertiser

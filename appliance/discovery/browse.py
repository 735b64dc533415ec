"""`clinicbox discover`: list every ClinicBox advertising on the LAN."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from appliance.discovery.advert import SERVICE_TYPE


@dataclass(frozen=True)
class FoundBox:
    """One advert seen on the LAN."""

    name: str
    addresses: tuple[str, ...]
    port: int
    state: str
    version: str
    fingerprint: str
    api: str

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["addresses"] = list(self.addresses)
        return out


def _text(props: dict[bytes, bytes | None], key: str) -> str:
    value = props.get(key.encode())
    return value.decode(errors="replace") if value else ""


async def browse(timeout_s: float = 3.0) -> list[FoundBox]:
    """Browse for `timeout_s` seconds and return the boxes found, by name.

    State changes seen during the browse (an update from unclaimed to claimed) replace
    the earlier entry for that box.
    """
    found: dict[str, FoundBox] = {}
    names: set[str] = set()
    azc = AsyncZeroconf(ip_version=IPVersion.V4Only)

    def _changed(
        zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            names.discard(name)
            found.pop(name, None)
        else:
            names.add(name)

    browser = AsyncServiceBrowser(azc.zeroconf, [SERVICE_TYPE], handlers=[_changed])
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left := deadline - loop.time()) > 0:
            for name in list(names):
                info = AsyncServiceInfo(SERVICE_TYPE, name)
                if await info.async_request(azc.zeroconf, min(1000.0, left * 1000)):
                    found[name] = _found(name, info)
            await asyncio.sleep(min(0.3, max(0.0, deadline - loop.time())))
    finally:
        await browser.async_cancel()
        await azc.async_close()
    return sorted(found.values(), key=lambda b: b.name)


def _found(name: str, info: AsyncServiceInfo) -> FoundBox:
    props = info.properties
    instance = name[: -len(SERVICE_TYPE) - 1] if name.endswith("." + SERVICE_TYPE) else name
    return FoundBox(
        name=instance,
        addresses=tuple(info.parsed_addresses()),
        port=info.port or 0,
        state=_text(props, "state"),
        version=_text(props, "ver"),
        fingerprint=_text(props, "id"),
        api=_text(props, "api"),
    )

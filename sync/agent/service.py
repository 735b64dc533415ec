"""Start the sync agent inside `clinicbox serve`: a task on the box's MediaLoop."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from appliance.identity import DeviceIdentity
from sync.agent.agent import SyncAgent

if TYPE_CHECKING:
    from appliance.box import Box
    from sync.agent.tunnel import TunnelClient

log = logging.getLogger(__name__)


def start_sync_agent(box: Box) -> SyncAgent | None:
    """Run the agent on `box.media` and stop it on shutdown. It yields the uplink while a call
    carries remote participants: the SFU's rooms announce that (`Rooms.on_remote_call`) to
    `set_live_session_remote`. Until the box is claimed it idles."""
    try:
        agent = SyncAgent(box.store, box.settings.data_dir,
                          DeviceIdentity.load_or_create(box.settings.secrets_dir))
    except (OSError, ValueError) as exc:
        log.warning("sync agent not started: %s", exc)
        return None
    # Media announces, sync listens: the SFU never imports the agent.
    box.rooms.on_remote_call(agent.set_live_session_remote)
    box.media.loop.call_soon_threadsafe(agent.start, box.media.loop)
    box.media.on_shutdown(agent.stop)
    box.sync_agent = agent
    return agent


def start_tunnel(box: Box, app: Any) -> TunnelClient | None:
    """Keep the box's tunnel to its centre up (once claimed) so that remote patients reach
    `app`'s patient pages through the centre; stopped with the media loop."""
    from sync.agent.claim import load_link
    from sync.agent.tunnel import TunnelClient, TunnelConfig

    data_dir = box.settings.data_dir
    try:
        config = TunnelConfig.from_env()
        identity = DeviceIdentity.load_or_create(box.settings.secrets_dir)
    except (OSError, ValueError) as exc:
        log.warning("tunnel not started: %s", exc)
        return None
    tunnel = TunnelClient(lambda: load_link(data_dir), identity, app, data_dir, config)
    tunnel.start()

    async def stop() -> None:
        tunnel.stop()

    box.media.on_shutdown(stop)
    box.tunnel = tunnel
    return tunnel

"""The running appliance: settings plus the long-lived parts every feature shares."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from peewee import SqliteDatabase

from appliance import __version__
from appliance.config import Settings
from appliance.media.rooms import Rooms
from appliance.media_loop import MediaLoop
from appliance.setup_code import SetupCode
from appliance.store.database import is_reachable
from appliance.store.store import Store
from appliance.tls import TlsMaterial

if TYPE_CHECKING:  # the service starts them (sync.agent.service); the box only holds them
    from sync.agent.agent import SyncAgent
    from sync.agent.tunnel import TunnelClient


@dataclass
class Box:
    """What `clinicbox serve` holds for its lifetime; the web app reads it, never rebuilds it."""

    settings: Settings
    tls: TlsMaterial
    db: SqliteDatabase
    media: MediaLoop
    setup_code: SetupCode
    # The encrypted record store; `db` is its database (`store.db`).
    store: Store
    started_at: float = field(default_factory=time.monotonic)
    # The SFU's rooms; they live on `media` (the loop) and are reached with `media.call`.
    rooms: Rooms = field(default_factory=Rooms)
    # The sync agent once started; it listens to `rooms.on_remote_call` and yields the
    # uplink while remote patients are in a call.
    sync_agent: SyncAgent | None = None
    # The tunnel to the centre once started: remote patients reach the patient pages
    # through it; `tunnel.state.public_url` is their address.
    tunnel: TunnelClient | None = None

    def health(self) -> dict[str, Any]:
        """The `/healthz` document."""
        lag = self.media.lag_ms
        db_ok = is_reachable(self.db)
        loop_ok = self.media.alive
        return {
            "status": "ok" if db_ok and loop_ok else "degraded",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "database": {"reachable": db_ok},
            "media_loop": {"alive": loop_ok, "lag_ms": None if math.isnan(lag) else lag},
        }

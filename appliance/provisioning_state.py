"""What the box knows about its own setup, read from `data_dir/state/`.

The service, the portal, the adverts and the commands share these small files: `clinic.json`
(the clinic's display name), `provisioned` (marker: no more setup codes) and `claim.json`
(0600: which centre the box belongs to). Nothing here is clinical content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.config import Settings
from sync.agent.claim import central_file


@dataclass(frozen=True)
class ProvisioningState:
    """What the box knows about its own setup, read from `data_dir/state/`."""

    clinic_name: str | None
    provisioned: bool
    claimed: bool
    central_url: str | None

    @property
    def advert_state(self) -> str:
        """The mDNS `state` TXT value."""
        return "claimed" if self.claimed else "unclaimed"


def state_dir(settings: Settings) -> Path:
    return settings.data_dir / "state"


def read_state(settings: Settings) -> ProvisioningState:
    """The current provisioning state (cheap: a few stat calls and two small reads)."""
    directory = state_dir(settings)
    clinic = _read_json(directory / "clinic.json")
    claim = _read_json(directory / "claim.json")
    central = central_file(settings.data_dir)
    return ProvisioningState(
        clinic_name=clinic.get("name") if clinic else None,
        provisioned=(directory / "provisioned").exists(),
        claimed=bool(claim) or central.exists(),
        central_url=claim.get("central_url") if claim else _central_url(central),
    )


def _central_url(path: Path) -> str | None:
    data = _read_json(path)
    url = data.get("central_url") if data else None
    return url if isinstance(url, str) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

"""Which seats get the centre's TURN relay: remote ones only.

A request is remote when the centre's tunnel relayed it (the tunnel marks the WSGI environ
with `RELAYED_ENVIRON_KEY`; nothing a client sends can set it) or when it comes from an
address outside the clinic's LAN networks. LAN participants get no TURN servers, in the page
or on the box's side, so their media stays on the LAN and never hairpins through the centre.
"""

from __future__ import annotations

from flask import request

from appliance.box import Box
from appliance.media.locality import is_lan
from appliance.media.turn import TurnGrant, load_service

#: Set (to True) by the centre tunnel's WSGI bridge on every request it relays.
RELAYED_ENVIRON_KEY = "clinicbox.relayed"


def request_is_remote(box: Box) -> bool:
    """Whether the current request reaches the box from outside the clinic LAN."""
    if request.environ.get(RELAYED_ENVIRON_KEY) is True:
        return True
    return not is_lan(request.remote_addr, box.rooms.adaptation.lan_networks)


def turn_grant(box: Box, participant_id: str, expires_at: float) -> TurnGrant | None:
    """A TURN grant for this seat when the request is remote and the centre sent a relay."""
    if not request_is_remote(box):
        return None
    service = load_service(box.settings.data_dir)
    if service is None:
        return None
    return TurnGrant(service, participant_id, expires_at)

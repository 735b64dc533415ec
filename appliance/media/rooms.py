"""All rooms of the box, owned by the media loop; the portal reaches them through `Rooms`."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCSessionDescription

from appliance.media.adaptive import AdaptationSettings
from appliance.media.aiortc_glue import consent
from appliance.media.aiortc_glue.seams import install_forwarding
from appliance.media.call_events import ChatSink
from appliance.media.locality import on_link_networks
from appliance.media.room import Room
from appliance.media.seat import GRACE_S
from appliance.media.turn import RelayChooser, TurnGrant

log = logging.getLogger(__name__)

#: Told True when a first participant on a remote link is in a call, False when the last one
#: has gone (see `Rooms.on_remote_call`).
RemoteCallListener = Callable[[bool], None]


class Rooms:
    """Room registry: rooms appear with their first participant and go with their last."""

    def __init__(
        self, adaptation: AdaptationSettings | None = None, grace_s: float = GRACE_S
    ) -> None:
        self.rooms: dict[str, Room] = {}
        self.grace_s = grace_s
        self.adaptation = adaptation or AdaptationSettings(tuple(on_link_networks()))
        self._breakouts: dict[str, dict[str, int]] = {}
        self.relay = RelayChooser()
        self._remote_call = False
        self._remote_call_listeners: list[RemoteCallListener] = []

    def on_remote_call(self, listener: RemoteCallListener) -> None:
        """Tell `listener` (on the media loop, so it must not block) whether a call now
        carries anyone over a remote link: True when the first remote participant's link is
        up, False once the last has left for good. A remote seat held while its owner
        reconnects still counts: they are coming back. Wired at start-up (the sync agent
        yields the clinic's uplink to remote patients' audio); media imports no listener."""
        self._remote_call_listeners.append(listener)

    @property
    def remote_call(self) -> bool:
        """Some room has a participant on a remote link (held seats count)."""
        return self._remote_call

    def _links_changed(self) -> None:
        active = any(room.adaptation.has_remote for room in self.rooms.values())
        if active == self._remote_call:
            return
        self._remote_call = active
        log.info(
            "media: %s",
            "a call carries remote participants"
            if active
            else "no call carries remote participants",
        )
        for listener in self._remote_call_listeners:
            listener(active)

    async def join(
        self,
        room_id: str,
        participant_id: str,
        role: str,
        name: str,
        sdp: object,
        kind: object,
        capacity: int = 12,
        on_chat: ChatSink | None = None,
        resume: object = None,
        thin: bool = False,
        turn: TurnGrant | None = None,
    ) -> RTCSessionDescription:
        """Answer a participant's offer in room_id (made on first join).

        A remote seat comes with a `turn` grant: the box gathers a relay candidate through
        the centre's TURN server too (a patient behind NAT cannot reach the box otherwise).
        """
        install_forwarding(asyncio.get_running_loop())
        consent.install()  # patients on EDGE/GPRS have round trips over aioice's 0.5 s
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(
                room_id,
                capacity=capacity,
                on_chat=on_chat,
                on_empty=self._on_empty,
                adaptation=self.adaptation,
                grace_s=self.grace_s,
                on_links=self._links_changed,
            )
            room.breakouts = dict(self._breakouts.get(room_id, {}))
        started = time.monotonic()
        ice_servers = await self.relay.ice_servers(turn)
        chosen = time.monotonic()
        try:
            answer = await room.join(
                participant_id,
                role,
                name,
                sdp,
                kind,
                resume,
                thin=thin,
                ice_servers=ice_servers,
            )
            log.debug(
                "join: TURN chosen in %.2f s, answered %.2f s later; candidates "
                "offered %s, answered %s",
                chosen - started,
                time.monotonic() - chosen,
                _candidate_types(str(sdp)),
                _candidate_types(answer.sdp),
            )
            if ice_servers and " typ relay" not in answer.sdp:
                # aioice drops a failed allocation silently after its gathering timeout.
                log.warning(
                    "TURN via %s gave no relay candidate; probing again next join",
                    ice_servers[0].urls,
                )
                self.relay.forget()
            return answer
        finally:
            await self._drop_if_empty(room_id)

    async def leave(self, room_id: str, participant_id: str) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            await room.leave(participant_id)
            await self._drop_if_empty(room_id)

    async def set_breakouts(self, room_id: str, groups: dict[str, int]) -> None:
        """Split a session's call into breakout rooms ({}: everyone back together)."""
        # Kept here too: a room closes when its last participant leaves and may come back.
        if groups:
            self._breakouts[room_id] = dict(groups)
        else:
            self._breakouts.pop(room_id, None)
        room = self.rooms.get(room_id)
        if room is not None:
            room.set_breakouts(groups)

    async def end(self, room_id: str) -> None:
        """End a session: everyone is told and disconnected."""
        self._breakouts.pop(room_id, None)
        room = self.rooms.pop(room_id, None)
        if room is not None:
            for p in list(room.participants.values()):
                p.send({"type": "notice", "text": "The session has ended."})
            await room.close()
            self._links_changed()

    def _on_empty(self, room_id: str) -> None:
        asyncio.get_running_loop().create_task(self._drop_if_empty(room_id))

    async def _drop_if_empty(self, room_id: str) -> None:
        room = self.rooms.get(room_id)
        if room is not None and room.is_empty:
            del self.rooms[room_id]
            await room.close()
            self._links_changed()

    async def close_all(self) -> None:
        """Shutdown: close every peer connection."""
        for room_id in list(self.rooms):
            room = self.rooms.pop(room_id)
            await room.close()
        self._links_changed()
        log.info("all rooms closed")

    def stats(self) -> dict[str, Any]:
        """Counts for health pages and leak tests."""
        participants = [p for r in self.rooms.values() for p in r.participants.values()]
        return {
            "rooms": len(self.rooms),
            "participants": len(participants),
            "held_seats": sum(len(r.held) for r in self.rooms.values()),
            "peer_connections": sum(1 for p in participants if p.pc.connectionState != "closed"),
            "publications": sum(len(p.publications) for p in participants),
            "slots": sum(len(p.all_slots()) for p in participants),
            "queued_frames": sum(s.queued for p in participants for s in p.all_slots()),
        }

    async def snapshot(self) -> dict[str, Any]:
        """`stats` plus the loop's task count, taken on the loop."""
        return {**self.stats(), "tasks": len(asyncio.all_tasks())}


def _candidate_types(sdp: str) -> dict[str, int]:
    """How many ICE candidates of each type an SDP carries (no addresses: they go to logs)."""
    counts: dict[str, int] = {}
    for kind in re.findall(r" typ (host|srflx|prflx|relay)", sdp):
        counts[kind] = counts.get(kind, 0) + 1
    return counts

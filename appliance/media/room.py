"""A group session's room: who is in it (seats, held seats and resume, lock, pin, breakout
rooms, the active speaker).

The path of a packet: publisher's RTP -> aiortc receiver (bounded jitter buffer, passthrough
decoder) -> `Publication` pump -> each `SlotTrack` showing it (bounded queue) -> the
subscriber's `RTCRtpSender`, which packs the encoded frame into RTP again. No decoding.

Each seat's peer connection is made and answered in `appliance.media.connection`; in-call
events on its data channel are `appliance.media.call_events`; what each subscriber's slots
show is `appliance.media.subscriptions`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import RTCIceServer, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from appliance.media.adaptive import AdaptationSettings, RoomAdaptation
from appliance.media.call_events import CallEvents, ChatSink
from appliance.media.connection import (
    ConnectionHooks,
    add_transceivers,
    attach_slots,
    hook,
    negotiate,
    new_peer_connection,
    new_publication,
)
from appliance.media.participant import Participant
from appliance.media.sdp import BadOffer, parse_offer
from appliance.media.seat import GRACE_S, HeldSeat, new_resume_token
from appliance.media.subscriptions import Subscriptions
from appliance.media.voices import DEFAULT_VOICES

log = logging.getLogger(__name__)

MAX_PARTICIPANTS = 12
SPEAKER_TICK_S = 0.3
SPEAKING_ENERGY = 0.25
# A challenger must be this much louder than the current speaker for two ticks in a row.
SPEAKER_MARGIN = 1.3


class MediaError(Exception):
    """A join or control request the room refuses; `status` is the HTTP status to answer."""

    status = 400


class RoomFull(MediaError):
    status = 409


class RoomLocked(MediaError):
    status = 403


class SeatInUse(MediaError):
    """The seat is live on another connection and the offer lacks its resume token."""

    status = 409


class Room:
    """Participants of one group session and the forwarding between them."""

    def __init__(
        self,
        room_id: str,
        capacity: int = MAX_PARTICIPANTS,
        on_chat: ChatSink | None = None,
        on_empty: Callable[[str], None] | None = None,
        adaptation: AdaptationSettings | None = None,
        grace_s: float = GRACE_S,
        forward_packets: bool = True,
        voices: int = DEFAULT_VOICES,
        forward_voices: bool | None = None,
        on_links: Callable[[], None] | None = None,
    ) -> None:
        self.id = room_id
        # Video leaves as the publishers' own RTP packets, rewritten per slot (forwarding/);
        # False: as reassembled frames that each subscriber's sender packetizes again.
        self.forward_packets = forward_packets
        # Voices likewise (None: as video); False keeps them as frames (a benchmark's "before").
        self.forward_voices = forward_packets if forward_voices is None else forward_voices
        # Told whenever a participant's link is classified (LAN or remote) or forgotten.
        self.on_links = on_links
        self.grace_s = grace_s
        # Seats of participants whose connection dropped, kept for `grace_s`.
        self.held: dict[str, HeldSeat] = {}
        self._expiries: dict[str, asyncio.TimerHandle] = {}
        self.on_empty = on_empty
        self.capacity = min(capacity, MAX_PARTICIPANTS)
        self.participants: dict[str, Participant] = {}
        self.locked = False
        self.pinned: str | None = None
        # Each breakout room's active speaker (0: the main room), and its challenger.
        self.speakers: dict[int, str] = {}
        self._challengers: dict[int, tuple[str, int]] = {}
        self._speaker_task: asyncio.Task[None] | None = None
        self._leaving: set[str] = set()
        # What each subscriber receives: slots, voices, shared low tiers, mixed voices.
        self.subscriptions = Subscriptions(self, voices)
        # Breakout room of each participant id; absent means the main room (0).
        self.breakouts: dict[str, int] = {}
        # The data-channel protocol: welcome, participants' messages, facilitator actions.
        self.events = CallEvents(self, on_chat)
        self.adaptation = RoomAdaptation(
            adaptation or AdaptationSettings(),
            lambda: list(self.participants.values()),
            self.assign_slots,
            self._announce,
        )

    # --- joining and leaving --------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        """Nobody in the call and no seat held for anyone coming back."""
        return not self.participants and not self.held

    async def join(
        self,
        participant_id: str,
        role: str,
        name: str,
        sdp: object,
        kind: object,
        resume: object = None,
        thin: bool = False,
        ice_servers: Sequence[RTCIceServer] = (),
    ) -> RTCSessionDescription:
        """Answer a participant's offer.

        `thin`: the client found its link slow (or chose audio only); the answer asks it for
        thin-uplink audio (`shape_answer`).

        `ice_servers` is empty for LAN seats (host candidates only) and names the centre's
        TURN relay for remote ones (see appliance.media.turn).

        With the resume token of this participant's seat, the seat comes back as it was
        (mute, raised hand, data saver), from a held seat or from a live one whose old
        connection then gives way. A live seat is never taken without its token (SeatInUse);
        a held one without it starts afresh.
        """
        offer = parse_offer(sdp, kind)
        live = self.participants.get(participant_id)
        if live is not None:
            # A replayed join token alone must not take a seat from the person in it: only
            # their own page (which holds the resume token) may move it to a new connection.
            if not (isinstance(resume, str) and hmac.compare_digest(resume, live.resume)):
                raise SeatInUse(
                    "this seat is already in the call on another connection; close the call "
                    "there, or wait a minute and join again"
                )
            await self.hold(participant_id)
        held = self.held.get(participant_id)
        rejoining = held is not None
        if self.locked and role != "facilitator" and not rejoining:
            raise RoomLocked("the room is locked; ask the facilitator to let you in")
        if len(self.participants) + len(self.held) >= self.capacity and not rejoining:
            raise RoomFull(f"the room is full ({self.capacity} people)")

        pc = new_peer_connection(ice_servers)
        me = Participant(id=participant_id, role=role, name=name, pc=pc)
        me.breakout = self.breakouts.get(participant_id, 0)
        me.resume = new_resume_token()
        resumed = held is not None and held.matches(resume)
        if held is not None and resumed:
            me.muted, me.hand_raised, me.last_n = held.muted, held.hand_raised, held.last_n
        if held is not None and held.rate is not None:
            me.rate = held.rate  # with or without the token: a reconnect refills no bucket
        slots = add_transceivers(pc, offer, self.forward_packets, self.forward_voices)
        hook(
            pc,
            ConnectionHooks(
                on_track=lambda track, receiver: self._publish(me, track, receiver),
                on_channel=lambda channel: self.events.open(
                    me, channel, lambda: self._schedule_hold(me)
                ),
                on_dropped=lambda: self._schedule_hold(me),
                on_connected=lambda: self._connected(me),
            ),
        )
        try:
            answer = await negotiate(pc, str(sdp), thin)
        except BadOffer:
            for publication in me.publications.values():
                await publication.stop()
            raise
        if held is not None and not resumed:
            # A fresh start forgets the old link, estimate included, before the new
            # connection's slots are tapped: after them it would forget their clocks too.
            self.adaptation.remove(participant_id)
        attach_slots(me, slots, self.adaptation.tap)
        if held is not None:
            self._release_seat(participant_id)
            if not resumed:
                self._links_changed()
        self.participants[participant_id] = me
        self._ensure_speaker_task()
        log.info(
            "room %s: %s %s (%d in room)",
            self.id,
            participant_id,
            "resumed" if resumed else "joined",
            len(self.participants),
        )
        self.events.broadcast(
            {
                "type": "participant",
                "participant": participant_id,
                "name": name,
                "role": role,
                "resumed": resumed,
            },
            exclude=me,
        )
        self.assign_slots()
        return answer

    def _connected(self, me: Participant) -> None:
        """`me`'s connection is up: its link is classified and planned for."""
        if self.participants.get(me.id) is not me:
            return
        self.adaptation.connected(me)
        if me.remote:
            # A remote link keeps the frame path: it splits video into small packets
            # for weak links, and over the lab's 3g link the packet path delivered
            # too little (docs/media.md). Nothing was sent yet: plans start now.
            for slot in me.video_slots:
                slot.release_output()
        self._links_changed()

    def _publish(self, me: Participant, track: MediaStreamTrack, receiver: RTCRtpReceiver) -> None:
        """`me` publishes `track`: it replaces what they published of that kind before."""
        publication = new_publication(
            me.id, track, receiver, self.forward_packets, self.forward_voices
        )
        publication.muted = track.kind == "audio" and me.muted
        old = me.publications.get(track.kind)
        if old is not None:
            asyncio.get_running_loop().create_task(old.stop())
        me.publications[track.kind] = publication
        publication.start()
        self.assign_slots()

    def _schedule_hold(self, me: Participant) -> None:
        if self.participants.get(me.id) is me and me.id not in self._leaving:
            if me.leaving:
                asyncio.get_running_loop().create_task(self.leave(me.id))
            else:
                asyncio.get_running_loop().create_task(self.hold(me.id))

    async def hold(self, participant_id: str) -> None:
        """The connection dropped: keep the seat for `grace_s`, tell the others."""
        me = self.participants.get(participant_id)
        if me is None or participant_id in self._leaving:
            return
        await self._disconnect(me)
        self.held[participant_id] = HeldSeat(
            participant_id,
            me.role,
            me.name,
            me.resume,
            me.muted,
            me.hand_raised,
            me.last_n,
            me.rate,
        )
        self._expiries[participant_id] = asyncio.get_running_loop().call_later(
            self.grace_s, self._expire, participant_id
        )
        log.info("room %s: %s reconnecting", self.id, participant_id)
        self.events.broadcast(
            {"type": "participant", "participant": participant_id, "reconnecting": True}
        )
        self.assign_slots()

    def _links_changed(self) -> None:
        if self.on_links is not None:
            self.on_links()

    def _expire(self, participant_id: str) -> None:
        if self.held.get(participant_id) is not None:
            asyncio.get_running_loop().create_task(self.leave(participant_id))

    def _release_seat(self, participant_id: str) -> None:
        self.held.pop(participant_id, None)
        expiry = self._expiries.pop(participant_id, None)
        if expiry is not None:
            expiry.cancel()

    async def _disconnect(self, me: Participant) -> None:
        """Close a participant's connection and the media the box held for it."""
        self._leaving.add(me.id)
        try:
            del self.participants[me.id]
            for publication in me.publications.values():
                await publication.stop()
            me.publications.clear()
            for slot in me.all_slots():
                slot.stop()
            await me.pc.close()
        finally:
            self._leaving.discard(me.id)
        if self.pinned == me.id:
            self.pinned = None
        for room, speaker in list(self.speakers.items()):
            if speaker == me.id:
                del self.speakers[room]

    async def leave(self, participant_id: str, announce: bool = True) -> None:
        """A participant leaves for good: their connection, held seat and adaptation go."""
        me = self.participants.get(participant_id)
        if participant_id in self._leaving:
            return
        was_held = participant_id in self.held
        self._release_seat(participant_id)
        if me is None and not was_held:
            return
        if me is not None:
            await self._disconnect(me)
        self.adaptation.remove(participant_id)
        self._links_changed()
        log.info("room %s: %s left (%d in room)", self.id, participant_id, len(self.participants))
        if announce:
            self.events.broadcast(
                {"type": "participant", "participant": participant_id, "left": True}
            )
        self.assign_slots()
        if self.is_empty and self.on_empty is not None:
            self.on_empty(self.id)

    async def close(self) -> None:
        for participant_id in list(self.participants) + list(self.held):
            await self.leave(participant_id, announce=False)
        await self.adaptation.stop()
        await self.subscriptions.close()
        if self._speaker_task is not None:
            self._speaker_task.cancel()
            await asyncio.gather(self._speaker_task, return_exceptions=True)
            self._speaker_task = None

    # --- what each subscriber receives ----------------------------------------------
    def assign_slots(self) -> None:
        """Fill each subscriber's slots (`Subscriptions.assign_slots`)."""
        self.subscriptions.assign_slots()

    def set_last_n(self, participant_id: str, last_n: int) -> None:
        """How many videos a participant receives (the adaptation layer drives this)."""
        me = self.participants.get(participant_id)
        if me is not None:
            me.last_n = max(0, last_n)
            self.assign_slots()

    def set_breakouts(self, groups: dict[str, int]) -> None:
        """Split the room: each participant hears and sees only their own breakout room.

        `groups` maps participant ids to breakout numbers; anyone absent is in the main room (0).
        """
        self.breakouts = {pid: n for pid, n in groups.items() if n > 0}
        # Speakers are per room: each room picks its own again on the next tick.
        self.speakers.clear()
        self._challengers.clear()
        for p in self.participants.values():
            room = self.breakouts.get(p.id, 0)
            if room != p.breakout:
                p.breakout = room
                p.send({"type": "breakout", "room": room})
        # Voices are chosen per room too.
        self.subscriptions.choose_voices_afresh(time.monotonic())
        self.assign_slots()

    # --- active speaker -------------------------------------------------------------
    def _ensure_speaker_task(self) -> None:
        if self._speaker_task is None:
            self._speaker_task = asyncio.get_running_loop().create_task(self._follow_speaker())

    async def _follow_speaker(self) -> None:
        while True:
            await asyncio.sleep(SPEAKER_TICK_S)
            self.update_speaker(time.monotonic())

    def update_speaker(self, now: float) -> None:
        """Pick each breakout room's active speaker from smoothed audio energy, with
        hysteresis; only that room is told (who talks elsewhere is not theirs to know)."""
        energies = {
            p.id: p.publications["audio"].energy
            for p in self.participants.values()
            if "audio" in p.publications and not p.publications["audio"].muted
        }
        by_room: dict[int, dict[str, float]] = {}
        for pid, energy in energies.items():
            if energy >= SPEAKING_ENERGY:
                self.participants[pid].last_spoke = now
            by_room.setdefault(self.participants[pid].breakout, {})[pid] = energy
        changed = [
            self._update_room_speaker(room, room_energies)
            for room, room_energies in by_room.items()
        ]
        voices_changed = self.subscriptions.voices > 0 and self.subscriptions.update_voices(now)
        if any(changed) or voices_changed:
            self.assign_slots()

    def _update_room_speaker(self, room: int, energies: dict[str, float]) -> bool:
        """Update breakout `room`'s speaker; True when it changed."""
        speaker = self.speakers.get(room)
        loudest = max(energies, key=lambda pid: energies[pid])
        if energies[loudest] < SPEAKING_ENERGY or loudest == speaker:
            self._challengers.pop(room, None)
            return False
        if energies[loudest] < energies.get(speaker or "", 0.0) * SPEAKER_MARGIN:
            self._challengers.pop(room, None)
            return False
        challenger = self._challengers.get(room)
        ticks = challenger[1] + 1 if challenger is not None and challenger[0] == loudest else 1
        self._challengers[room] = (loudest, ticks)
        if ticks < 2 and speaker is not None:
            return False
        self.speakers[room] = loudest
        self._challengers.pop(room, None)
        self.events.broadcast({"type": "speaker", "participant": loudest}, breakout=room)
        return True

    def _announce(self, event: dict[str, Any], exclude_id: str) -> None:
        self.events.broadcast(event, exclude=self.participants.get(exclude_id))

    # --- facilitator controls -------------------------------------------------------
    def mute(self, participant_id: str, on: bool = True) -> None:
        """Stop (or resume) forwarding a participant's audio and tell everyone."""
        target = self.participants[participant_id]
        target.muted = on
        audio = target.publications.get("audio")
        if audio is not None:
            audio.muted = on
        target.send({"type": "mute", "participant": "me", "on": on})
        self.events.broadcast(
            {"type": "muted", "participant": participant_id, "on": on},
            exclude=target,
            breakout=target.breakout,
        )

    async def remove(self, participant_id: str) -> None:
        target = self.participants.get(participant_id)
        if target is None:
            return
        target.send({"type": "removed"})
        await self.leave(participant_id)

    def pin(self, participant_id: str | None) -> None:
        self.pinned = participant_id
        self.events.broadcast({"type": "pin", "participant": participant_id})
        self.assign_slots()

    def lock(self, on: bool = True) -> None:
        self.locked = on
        self.events.broadcast({"type": "lock", "on": on})

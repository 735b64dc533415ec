"""One seat in a room: its peer connection, what it publishes and its receive slots."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection

from appliance.media.adaptation import Estimate, Plan
from appliance.media.event_rate import EventRate
from appliance.media.publication import Publication
from appliance.media.slot import SlotTrack

log = logging.getLogger(__name__)

DEFAULT_LAST_N = 4


@dataclass(eq=False)
class Participant:
    """A participant's media state on the box; names stay in memory, never in logs."""

    id: str
    role: str
    name: str
    pc: RTCPeerConnection
    joined_at: float = field(default_factory=time.monotonic)
    channel: RTCDataChannel | None = None
    publications: dict[str, Publication] = field(default_factory=dict)
    audio_slots: list[SlotTrack] = field(default_factory=list)
    video_slots: list[SlotTrack] = field(default_factory=list)
    last_n: int = DEFAULT_LAST_N
    hand_raised: bool = False
    self_muted: bool = False
    muted: bool = False  # by the facilitator: the box forwards none of their audio
    leaving: bool = False  # said goodbye: a dropped connection is not held for them
    resume: str = ""  # their seat's resume token, sent in the welcome event
    breakout: int = 0  # 0: the main room
    remote: bool = True  # until its address says it is on the clinic's LAN
    plan: Plan | None = None  # what adaptation decided it receives (None: not yet)
    link: Estimate | None = None
    last_spoke: float = 0.0
    events_sent: int = 0
    rate: EventRate = field(default_factory=EventRate)  # how fast it may send events

    @property
    def is_facilitator(self) -> bool:
        return self.role == "facilitator"

    def send(self, event: dict[str, Any]) -> bool:
        """Send an in-call event on the data channel; False when it is not open."""
        if self.channel is None or self.channel.readyState != "open":
            return False
        try:
            self.channel.send(json.dumps(event, separators=(",", ":")))
        except Exception as exc:  # a closing SCTP association: the leave path cleans up
            log.debug("event to %s not sent: %s", self.id, type(exc).__name__)
            return False
        self.events_sent += 1
        return True

    def slot_map(self) -> dict[str, dict[str, str | None]]:
        """Which participant each receive slot shows, by mid."""
        return {
            kind: {
                s.mid: (s.source.participant_id if s.source else None) for s in slots
            }
            for kind, slots in (("audio", self.audio_slots), ("video", self.video_slots))
        }

    def all_slots(self) -> list[SlotTrack]:
        return self.audio_slots + self.video_slots

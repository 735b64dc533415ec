"""The packet path for voices: a publisher's Opus packets to every audio slot hearing it.

An Opus packet is a whole frame, so a voice needs no reassembly: `AudioFeed` takes each
packet as it leaves SRTP, measures its loudness for the voice choice (the audio-level header
extension aiortc's transport already parsed, else the packet's size), drops a late or
duplicate one, and hands the bytes to the `SlotOutput`s of the slots that hear this
publisher, which rewrite SSRC, payload type, sequence number and timestamp into each slot's
own stream. No frame object is made per packet; frames are assembled only while the mixer
decodes this voice (`Publication.wants_frames`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc.jitterbuffer import MAX_MISORDER

from appliance.media.aiortc_glue.forwarding import tap_receiver
from appliance.media.forwarding.rewrite import parse_audio

if TYPE_CHECKING:
    from aiortc import RTCRtpReceiver
    from aiortc.rtp import RtpPacket

    from appliance.media.forwarding.forwarder import SlotOutput

# (RFC 6464 level or None, Opus payload bytes) -> whether to forward it (False: muted).
Listener = Callable[[int | None, int], bool]


class AudioFeed:
    """One publisher's voice as packets, fanned out to the slots that hear it."""

    def __init__(self, receiver: RTCRtpReceiver, heard: Listener) -> None:
        self.heard = heard
        self.outputs: set[SlotOutput] = set()
        self.packets_in = 0
        self.dropped_late = 0
        self._last: int | None = None
        tap_receiver(receiver, self.on_packet)

    async def on_packet(self, data: bytes, packet: RtpPacket) -> None:
        seq = packet.sequence_number
        last = self._last
        if last is not None:
            behind = (last - seq) & 0xFFFF
            # Late or a duplicate: forwarding it would only reorder the subscribers' streams.
            # A jump back of MAX_MISORDER or more is the sender restarting its sequence.
            if behind < MAX_MISORDER and behind <= ((seq - last) & 0xFFFF):
                self.dropped_late += 1
                return
        self._last = seq
        parsed = parse_audio(data)
        if parsed is None:
            return
        view = parsed[0]
        size = view.payload_end - view.payload_start
        if size <= 0:
            return  # a padding-only probe: nothing to forward
        level = packet.extensions.audio_level
        self.packets_in += 1
        if not self.heard(None if level is None else level[1], size) or not self.outputs:
            return
        wall, now = time.time(), time.monotonic()
        for output in list(self.outputs):
            if (out := output.forward_now(data, self, parsed, wall, now)) is not None:
                await output.send_later(out, len(data))

    def stop(self) -> None:
        for output in list(self.outputs):
            output.detach_feed(self)

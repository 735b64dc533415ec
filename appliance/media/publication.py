"""A publisher's track on the box: read once, fanned out to every subscribed slot.

The pump reads the remote track continuously (so aiortc's unbounded receive queue never
grows, subscribed or not) and hands each encoded frame to the slots that currently show
this publication. Keyframe requests to the publisher are rate-limited here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from appliance.media.aiortc_glue.rtp import request_pli, retransmission_ssrcs
from appliance.media.encoded import PACKET_OVERHEAD_BYTES, EncodedFrame, PassthroughDecoder
from appliance.media.jitter import ForwardingAudioBuffer

if TYPE_CHECKING:
    from appliance.media.forwarding.audio_feed import AudioFeed
    from appliance.media.forwarding.forwarder import VideoFeed
    from appliance.media.slot import SlotTrack

log = logging.getLogger(__name__)

KEYFRAME_MIN_INTERVAL_S = 0.5
# Smoothing of speech energy (per packet) for active-speaker detection.
LEVEL_ALPHA = 0.15


class Publication:
    """One remote audio or video track of one participant."""

    def __init__(
        self, participant_id: str, track: MediaStreamTrack, receiver: RTCRtpReceiver
    ) -> None:
        self.participant_id = participant_id
        self.kind = track.kind
        self.track = track
        self.receiver = receiver
        self.slots: set[SlotTrack] = set()
        self.muted = False
        self.frames_in = 0
        self.bytes_in = 0  # wire bytes, headers included
        self.keyframe_requests = 0
        self.energy = 0.0  # 0 silent .. 1 loud, smoothed
        self._last_keyframe_request = 0.0
        # Its packets, for slots that forward packets (a forwarding room's video and voices).
        self.feed: VideoFeed | AudioFeed | None = None
        self._task: asyncio.Task[None] | None = None
        self._direct: ForwardingAudioBuffer | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def stop(self) -> None:
        if self._direct is not None:
            self._direct.deliver = None
            self._direct = None
        for slot in list(self.slots):
            slot.detach(self)
        if self.feed is not None:
            self.feed.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _pump(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, EncodedFrame):
                continue  # the forwarding seam is not installed for this receiver
            self.take(frame)

    def take(self, frame: EncodedFrame) -> None:
        """One frame in: measured, then handed to every slot that shows this publication."""
        self.frames_in += 1
        if frame.kind == "video":
            self.bytes_in += frame.wire_size
        elif self.feed is None:  # else the voice's feed counted and measured it already
            self.bytes_in += frame.wire_size
            self._measure(frame.audio_level, len(frame))
        if frame.kind == "audio":
            if self.muted:
                return
        elif frame.after_gap:
            self.request_keyframe()
        for slot in list(self.slots):
            slot.push(self, frame)

    def take_directly_from(self, buffer: ForwardingAudioBuffer) -> None:
        """Take this audio publication's packets from its receiver's buffer as they arrive,
        on the media loop, instead of through aiortc's decoder thread."""
        decoder = PassthroughDecoder("audio")

        def deliver(jitter_frame: JitterFrame) -> None:
            for frame in decoder.decode(jitter_frame):
                self.take(frame)

        self._direct = buffer
        buffer.deliver = deliver

    def heard(self, audio_level: int | None, payload_bytes: int) -> bool:
        """One voice packet arrived on the packet path (`AudioFeed`): measured and counted;
        True when it is to be forwarded (the publisher is not muted)."""
        self.bytes_in += payload_bytes + PACKET_OVERHEAD_BYTES
        self._measure(audio_level, payload_bytes)
        return not self.muted

    def _measure(self, audio_level: int | None, payload_bytes: int) -> None:
        if audio_level is not None:
            loudness = max(0.0, 1.0 - audio_level / 60.0)  # -60 dBov and below: silence
        else:
            # Without the level extension, Opus packet size tracks speech (DTX makes silence tiny).
            loudness = min(1.0, max(0.0, (payload_bytes - 10) / 90.0))
        self.energy += LEVEL_ALPHA * (loudness - self.energy)

    def wants_frames(self) -> bool:
        """Whether anything reads this publication's frames (the low tier, the mixer, a slot
        that does not forward packets); forwarded packets need none."""
        return self.feed is None or any(getattr(s, "output", None) is None for s in self.slots)

    def request_keyframe(self) -> bool:
        """Ask the publisher for a keyframe, at most every `KEYFRAME_MIN_INTERVAL_S`."""
        if self.kind != "video":
            return False
        now = time.monotonic()
        if now - self._last_keyframe_request < KEYFRAME_MIN_INTERVAL_S:
            return False
        self._last_keyframe_request = now
        # The media SSRC, not its retransmission stream's: aiortc lists every SSRC seen in
        # the last 10 s, RTX included, and Chromium opens a call with RTX padding (bandwidth
        # probes) before its first picture, so the first listed was the RTX SSRC; Chromium
        # ignores a PLI for it, and a patient's first picture waited ~10 s for that entry
        # to expire.
        rtx = retransmission_ssrcs(self.receiver)
        sources = [s for s in self.receiver.getSynchronizationSources() if s.source not in rtx]
        if not sources:
            return False
        self.keyframe_requests += 1
        ssrc = max(sources, key=lambda s: s.timestamp).source
        asyncio.get_running_loop().create_task(request_pli(self.receiver, ssrc))
        return True

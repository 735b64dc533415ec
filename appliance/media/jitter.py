"""A jitter buffer whose wait for a missing packet is bounded in time.

aiortc's `JitterBuffer` releases only contiguous frames and NACKs a loss once, so one lost
video packet can hold every later frame until 512 packets have piled up: seconds of frozen
video. This subclass gives a missing packet `MAX_HOLD_S` (time for one NACK retransmission),
then skips to the next complete frame, marks it `after_gap` and asks for a keyframe. A video
frame is also released as soon as its last packet (RTP marker bit) is in.

Forwarded audio needs no jitter buffer at all: an Opus packet is a whole frame, and the
subscriber's own jitter buffer and Opus FEC deal with loss and reordering. aiortc's audio
buffer (capacity 16, prefetch 4) adds 80 ms on a clean link and, from the first lost packet
on, holds a publisher's audio ~300 ms deep for good. `ForwardingAudioBuffer` releases each
packet as it arrives instead; receivers that decode keep the buffering.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiortc.jitterbuffer import MAX_MISORDER, JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

from appliance.media.aiortc_glue.rtp import depayloaded, rtp_payload

log = logging.getLogger(__name__)

MAX_HOLD_S = 0.4
# aiortc's audio buffer is created as JitterBuffer(capacity=16, prefetch=4).
AUDIO_CAPACITY = 16


class BoundedJitterBuffer(JitterBuffer):
    """`JitterBuffer` that skips a gap after `MAX_HOLD_S` and reports audio levels."""

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)
        self._gap_since: float | None = None
        self._skipped = False
        self._levels: dict[int, int] = {}
        self.gaps_skipped = 0
        # Asked per packet when set: False while nothing reads this receiver's frames (its
        # video leaves as forwarded packets), so no frame is assembled or handed over.
        self.frames_wanted: Callable[[], bool] | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self.frames_wanted is not None and not self.frames_wanted():
            if self._origin is not None:
                # Start afresh when frames are wanted again (from a keyframe asked for then).
                self._packets = [None] * self._capacity
                self._origin = None
                self._gap_since = None
            return False, None
        if self._is_video and not depayloaded(packet):
            return False, None  # not VP8 after all: aiortc drops such a packet too
        level = packet.extensions.audio_level
        if level is not None:
            previous = self._levels.get(packet.timestamp, 127)
            self._levels[packet.timestamp] = min(previous, level[1])
        pli_flag, frame = super().add(packet)
        if frame is None and self._is_video and packet.marker:
            frame = self._complete_frame_at_origin()
        if frame is not None:
            self._gap_since = None
            return pli_flag, self._annotate(frame)
        if self._has_hole_before(packet.sequence_number):
            now = time.monotonic()
            if self._gap_since is None:
                self._gap_since = now
            elif now - self._gap_since > MAX_HOLD_S and self._skip_to_next_frame():
                self._gap_since = None
                self._skipped = True
                self.gaps_skipped += 1
                frame = self._remove_frame(packet.sequence_number)
                return self._is_video or pli_flag, self._annotate(frame) if frame else None
        return pli_flag, None

    def _complete_frame_at_origin(self) -> JitterFrame | None:
        """The frame at the origin if all its packets are in, ended by the RTP marker bit.

        aiortc waits for the first packet of the next frame before releasing one, which adds
        a frame interval (67 ms at 15 fps) at every hop; the marker says the frame is whole.
        """
        packets = []
        timestamp = None
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]  # type: ignore[operator]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                return None
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                data = b"".join(rtp_payload(p) for p in packets)
                return JitterFrame(data=data, timestamp=timestamp)
        return None

    def _has_hole_before(self, sequence_number: int) -> bool:
        """True if a packet between the origin and `sequence_number` is missing."""
        if self._origin is None:
            return False
        span = uint16_add(sequence_number, -self._origin)
        if span >= self._capacity:
            return False
        return any(
            self._packets[(self._origin + count) % self._capacity] is None
            for count in range(span)
        )

    def _skip_to_next_frame(self) -> bool:
        """Drop the gap and the partial frame after it; True if a frame start was found."""
        first_ts: int | None = None
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]  # type: ignore[operator]
            if packet is None:
                continue
            if first_ts is None:
                first_ts = packet.timestamp
            elif packet.timestamp != first_ts:
                self.remove(count)
                return True
        return False

    def _annotate(self, frame: JitterFrame) -> JitterFrame:
        level = self._levels.pop(frame.timestamp, None)
        if len(self._levels) > 64:  # levels of frames that never completed
            self._levels.clear()
        frame.audio_level = level  # type: ignore[attr-defined]
        frame.after_gap = self._skipped  # type: ignore[attr-defined]
        self._skipped = False
        return frame


class ForwardingAudioBuffer:
    """Releases every Opus packet at once as its own frame; never waits, never reorders.

    A packet older than (or the same as) the last one released is dropped: forwarding it
    late would only reorder the subscriber's stream. A jump back of `MAX_MISORDER` packets
    or more is taken as the sender restarting its sequence, as aiortc's buffer does.

    With `deliver` set (the publication's own handler), a frame goes there at once, on the
    media loop, and aiortc gets nothing to hand its decoder thread: that thread's hop there
    and back had held forwarded voices 17 ms at the 90th percentile and 61 ms at the 99th on
    a loaded machine, as long again as the loop's own lag, and browsers buffered for it.
    """

    def __init__(self, capacity: int = AUDIO_CAPACITY, prefetch: int = 0,
                 is_video: bool = False) -> None:
        # The signature is JitterBuffer's, so the receiver can build either; nothing is kept.
        self._capacity = capacity
        self._last: int | None = None
        self.dropped_late = 0
        self.deliver: Callable[[JitterFrame], None] | None = None
        # Asked per packet when set: False while nothing decodes this voice (its packets are
        # forwarded by its `AudioFeed`), so no frame is made for it.
        self.frames_wanted: Callable[[], bool] | None = None

    @property
    def capacity(self) -> int:
        return self._capacity

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self.frames_wanted is not None and not self.frames_wanted():
            self._last = None  # start afresh when the mixer reads this voice again
            return False, None
        if self._last is not None:
            ahead = uint16_add(packet.sequence_number, -self._last)
            behind = uint16_add(self._last, -packet.sequence_number)
            if behind <= ahead and behind < MAX_MISORDER:  # late, or a duplicate
                self.dropped_late += 1
                return False, None
        self._last = packet.sequence_number
        data = rtp_payload(packet)
        if not data:
            return False, None  # padding-only probe: nothing to forward
        frame = JitterFrame(data=data, timestamp=packet.timestamp)
        level = packet.extensions.audio_level
        frame.audio_level = level[1] if level is not None else None  # type: ignore[attr-defined]
        frame.after_gap = False  # type: ignore[attr-defined]
        if self.deliver is not None:
            try:
                self.deliver(frame)
            except Exception as exc:  # noqa: BLE001 - never let one voice break the transport
                # This runs inside aiortc's receive path for the whole bundled transport.
                log.error("forwarding a voice packet failed: %s: %s", type(exc).__name__, exc)
            return False, None
        return False, frame

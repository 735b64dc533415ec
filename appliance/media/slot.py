"""A subscriber's receive slot: one outgoing track that shows one source at a time.

Clients offer a fixed set of receive-only m-lines (audio and video slots), so participants
joining and leaving never renegotiate: the box switches what a slot shows, keeps its RTP
timestamps continuous, and tells the client who is in which slot. The queue is bounded;
a subscriber that falls behind loses frames up to the next keyframe, never grows memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from appliance.media.encoded import EncodedFrame

if TYPE_CHECKING:
    from appliance.media.forwarding.forwarder import SlotOutput


class Source(Protocol):
    """What a slot can show: a publication, its low tier or presence, a mixed audio feed."""

    participant_id: str
    kind: str
    slots: set[SlotTrack]

    def request_keyframe(self) -> bool: ...

VIDEO_QUEUE_FRAMES = 30  # two seconds at 15 fps
AUDIO_QUEUE_PACKETS = 25  # half a second of 20 ms packets
# Clock ticks between the last frame of an old source and the first of a new one.
SWITCH_GAP = {"video": 6000, "audio": 960}
CLOCK_RATE = {"video": 90_000, "audio": 48_000}


class SlotTrack(MediaStreamTrack):
    """Outgoing track of one slot; `RTCRtpSender` packs what `recv` returns."""

    def __init__(self, kind: str, mid: str) -> None:
        super().__init__()
        self.kind = kind
        self.mid = mid
        self.source: Source | None = None
        self._queue: deque[EncodedFrame] = deque()
        self._limit = VIDEO_QUEUE_FRAMES if kind == "video" else AUDIO_QUEUE_PACKETS
        self._ready = asyncio.Event()
        self._waiting_for_keyframe = kind == "video"
        self._src_base: int | None = None
        self._out_base = 0
        self._last_out: int | None = None
        self._last_out_at = 0.0  # monotonic time the last frame was stamped
        self.sender: RTCRtpSender | None = None  # set once the transceiver exists
        # Largest RTP payload of a video frame (None: aiortc's); set per link by adaptation.
        self.max_payload: int | None = None
        # Video slots of a room that forwards packets: everything shown leaves through here
        # (publishers' packets rewritten, other sources' frames packetized), not the sender.
        self.output: SlotOutput | None = None
        self.frames_out = 0
        self.bytes_out = 0  # wire bytes handed to the sender, headers included
        self.dropped = 0

    # --- source switching -------------------------------------------------------------
    def attach(self, source: Source | None) -> None:
        """Show `source` in this slot from its next keyframe (None: show nothing)."""
        if source is self.source:
            return
        if self.source is not None:
            self.source.slots.discard(self)
        self.source = source
        self._queue.clear()
        self._src_base = None
        self._waiting_for_keyframe = self.kind == "video"
        if self.output is not None:
            self.output.show_feed(getattr(source, "feed", None))
        if source is not None:
            source.slots.add(self)
            source.request_keyframe()

    def detach(self, source: Source) -> None:
        if self.source is source:
            self.attach(None)

    def request_keyframe(self) -> None:
        """The subscriber lost a picture (PLI/FIR): ask the publisher, rate-limited there."""
        if self.source is not None:
            # Forwarded packets are never held back: the keyframe asked for comes through.
            self._waiting_for_keyframe = self.kind == "video" and not self._forwards_packets
            self.source.request_keyframe()

    @property
    def _forwards_packets(self) -> bool:
        return self.output is not None and getattr(self.source, "feed", None) is not None

    def release_output(self) -> None:
        """Send what this slot shows as frames through the sender from now on (from the
        next keyframe), not as forwarded packets."""
        if self.output is not None:
            self.output.release()
            self.output = None
            self._waiting_for_keyframe = self.kind == "video"
            if self.source is not None:
                self.source.request_keyframe()

    def sent(self, wire_bytes: int, end_of_frame: bool) -> None:
        """A packet left through `output` (the counters adaptation reads)."""
        self.bytes_out += wire_bytes
        self.frames_out += end_of_frame

    # --- frames in ------------------------------------------------------------------
    def push(self, source: Source, frame: EncodedFrame) -> None:
        if source is not self.source or self.readyState != "live":
            return
        if self._forwards_packets:
            return  # its packets are forwarded as they arrive
        if self._waiting_for_keyframe:
            if not frame.keyframe:
                self.dropped += 1
                # Keep asking (rate-limited by the source): an earlier request may have
                # been lost, or sent before the publisher's transport was up.
                source.request_keyframe()
                return
            self._waiting_for_keyframe = False
        elif frame.after_gap and not frame.keyframe:
            # A frame after a skipped gap references lost data: wait for the keyframe asked for.
            self._waiting_for_keyframe = True
            self.dropped += 1
            return
        if self.output is not None:
            asyncio.get_running_loop().create_task(
                self.output.forward_frame(source, frame.split(self.max_payload)))
            return
        if len(self._queue) >= self._limit:
            self.dropped += len(self._queue)
            self._queue.clear()
            if self.kind == "video":
                self._waiting_for_keyframe = not frame.keyframe
                source.request_keyframe()
                if not frame.keyframe:
                    return
        self._queue.append(self._retime(frame))
        self._ready.set()

    def _retime(self, frame: EncodedFrame) -> EncodedFrame:
        now = time.monotonic()
        if self._src_base is None:
            self._src_base = frame.pts
            if self._last_out is None:
                self._out_base = 0
            else:
                # The new source starts as far after the old one's last frame as time really
                # passed (at least one step): a slot idle for seconds that resumed one step
                # later looked to the receiver like a packet seconds late, and browsers grow
                # their jitter buffer for such "delay".
                elapsed = int((now - self._last_out_at) * CLOCK_RATE[self.kind])
                self._out_base = self._last_out + max(SWITCH_GAP[self.kind], elapsed)
        pts = (self._out_base + frame.pts - self._src_base) & 0xFFFFFFFF
        self._last_out = pts
        self._last_out_at = now
        return frame.with_pts(pts)

    # --- frames out -----------------------------------------------------------------
    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame = self._queue.popleft()
        if self.kind == "video":
            frame = frame.split(self.max_payload)
        self.frames_out += 1
        self.bytes_out += frame.wire_size
        return frame

    def stop(self) -> None:
        super().stop()
        if self.output is not None:
            self.output.close()
        if self.source is not None:
            self.source.slots.discard(self)
            self.source = None
        self._queue.clear()
        self._ready.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

"""The packet path: a publisher's video packets to every slot showing it, NACKs from cache.

`VideoFeed` belongs to one video publication: it caches the publisher's packets and hands
each one, as decrypted bytes, to the `SlotOutput`s showing it. A `SlotOutput` belongs to one
subscriber's video slot: it rewrites (`SlotRewriter`) and sends through the subscriber's
sender link, answers that subscriber's NACKs from the caches, and packetizes frames itself
for sources that only have frames (the low tier and presence), so one numbering covers the
slot whatever it shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from aiortc.codecs.vpx import Vp8Encoder

from appliance.media.aiortc_glue.forwarding import SenderLink, rtx_ssrcs, tap_receiver
from appliance.media.encoded import PACKET_OVERHEAD_BYTES, EncodedFrame
from appliance.media.forwarding.packet_cache import PacketCache
from appliance.media.forwarding.rewrite import (
    RtpView,
    SlotRewriter,
    Vp8Descriptor,
    parse_video,
    unwrap_rtx,
)

if TYPE_CHECKING:
    from aiortc import RTCRtpReceiver
    from aiortc.rtp import RtpPacket

    from appliance.media.forwarding.audio_feed import AudioFeed


class PacketSource(Protocol):
    """What a slot's segment came from: anything holding its packets by sequence number."""

    cache: PacketCache


class VideoFeed:
    """One publisher's video as packets: cached, and fanned out to the slots showing it."""

    def __init__(self, receiver: RTCRtpReceiver, request_keyframe: Callable[[], bool]) -> None:
        self.receiver = receiver
        self.request_keyframe = request_keyframe
        self.cache = PacketCache()
        self.outputs: set[SlotOutput] = set()
        self.packets_in = 0
        self._media_ssrcs: set[int] = set()
        self._rtx: dict[int, int] = {}
        tap_receiver(receiver, self.on_packet)

    async def on_packet(self, data: bytes, packet: RtpPacket) -> None:
        ssrc = packet.ssrc
        if ssrc not in self._media_ssrcs:
            if not self._rtx:
                self._rtx = rtx_ssrcs(self.receiver)
            media = self._rtx.get(ssrc)
            if media is not None:
                unwrapped = unwrap_rtx(data, media)
                if unwrapped is None:
                    return
                data = unwrapped
            else:
                self._media_ssrcs.add(ssrc)
        parsed = parse_video(data)
        if parsed is None:
            return
        self.packets_in += 1
        await self.deliver(data, parsed[0].seq, parsed)

    async def deliver(
        self, data: bytes, seq: int, parsed: tuple[RtpView, Vp8Descriptor] | None = None
    ) -> None:
        """Cache a media packet (RTX unwrapped) and forward it to every slot showing it."""
        self.cache.put(seq, data)
        if self.outputs:
            wall, now = time.time(), time.monotonic()
            for output in list(self.outputs):
                if (out := output.forward_now(data, self, parsed, wall, now)) is not None:
                    await output.send_later(out, len(data))

    def stop(self) -> None:
        for output in list(self.outputs):
            output.detach_feed(self)
        self.cache.clear()


class FramePackets:
    """A frame-only source's frames packetized for one slot, with its own numbering: VP8
    frames split as aiortc's packetizer does, an Opus packet (the mixer's) as one packet."""

    def __init__(self, kind: str = "video") -> None:
        self.cache = PacketCache(256)
        self._packer = Vp8Encoder() if kind == "video" else None
        self._seq = 0

    def packetize(self, frame: EncodedFrame) -> list[bytes]:
        if self._packer is None:
            payloads, timestamp = [frame.data], frame.pts
        else:
            # The seam's pack takes encoded frames, honours frame.max_payload (aiortc_glue/seams).
            payloads, timestamp = self._packer.pack(frame)  # type: ignore[arg-type]
        packets = []
        for i, payload in enumerate(payloads):
            marker = 0x80 if i == len(payloads) - 1 else 0
            header = (
                bytes((0x80, marker))
                + self._seq.to_bytes(2, "big")
                + (timestamp & 0xFFFFFFFF).to_bytes(4, "big")
                + b"\x00\x00\x00\x00"
            )
            packet = header + payload
            self.cache.put(self._seq, packet)
            packets.append(packet)
            self._seq = (self._seq + 1) & 0xFFFF
        return packets


class SlotOutput:
    """One subscriber slot's packet output (video, or audio: `kind`)."""

    def __init__(
        self, link: SenderLink, on_sent: Callable[[int, bool], None], kind: str = "video"
    ) -> None:
        self.link = link
        self.on_sent = on_sent  # (wire bytes, end of frame) for the slot's counters
        self.kind = kind
        self.rewriter: SlotRewriter | None = None
        self.feed: VideoFeed | AudioFeed | None = None
        self._frame_sources: dict[int, FramePackets] = {}
        self.retransmitted = 0
        self.nacks_missed = 0
        if kind == "video":
            # Voices are not repaired by retransmission (Opus FEC and the subscriber's
            # concealment do that); a video slot answers NACKs from the caches.
            link.take_nacks(self.on_nack)

    # --- what the slot shows --------------------------------------------------------
    def show_feed(self, feed: VideoFeed | AudioFeed | None) -> None:
        """Forward `feed`'s packets from its next keyframe (None: only frames from now)."""
        if self.feed is not None:
            self.feed.outputs.discard(self)
        self.feed = feed
        if feed is not None:
            feed.outputs.add(self)
        if self.rewriter is not None:
            self.rewriter.switch()

    def detach_feed(self, feed: VideoFeed | AudioFeed) -> None:
        if self.feed is feed:
            self.show_feed(None)

    def close(self) -> None:
        self.show_feed(None)
        self._frame_sources.clear()

    def release(self) -> None:
        """Hand the slot back to aiortc's sender (frames, its own NACK history) for good."""
        self.close()
        self.link.taking_nacks = False

    # --- packets out ----------------------------------------------------------------
    def _ready(self) -> SlotRewriter | None:
        if self.rewriter is None:
            if not self.link.ready:
                return None
            assert self.link.payload_type is not None
            self.rewriter = SlotRewriter(self.link.ssrc, self.link.payload_type, self.kind)
        return self.rewriter if self.link.ready else None

    def forward_now(
        self,
        data: bytes,
        source: VideoFeed | AudioFeed | FramePackets,
        parsed: tuple[RtpView, Vp8Descriptor] | None,
        wall: float,
        now: float,
    ) -> bytes | None:
        """Rewrite `data` for this slot and send it at once where the link allows; the
        rewritten packet when it must still be sent with `send_later` (awaited)."""
        rewriter = self.rewriter
        if rewriter is None:
            rewriter = self._ready()
            if rewriter is None:
                return None
        out = rewriter.rewrite(data, source, self.link.extensions(wall), now, parsed)
        if out is None:
            if rewriter.waiting and isinstance(source, VideoFeed):
                source.request_keyframe()  # rate-limited by the publication
            return None
        if not self.link.send_now(out, int.from_bytes(out[4:8], "big"), len(data)):
            return out
        self._sent(out)
        return None

    async def send_later(self, out: bytes, payload_bytes: int) -> None:
        """Send a rewritten packet through the link's awaited chain (a remote link's pacer)."""
        try:
            await self.link.send(out, int.from_bytes(out[4:8], "big"), payload_bytes)
        except ConnectionError:
            return
        self._sent(out)

    def _sent(self, out: bytes) -> None:
        # Every Opus packet is a frame; a video frame ends at the marker bit.
        self.on_sent(
            len(out) + PACKET_OVERHEAD_BYTES - 12, self.kind == "audio" or bool(out[1] & 0x80)
        )

    async def forward(
        self,
        data: bytes,
        source: VideoFeed | AudioFeed | FramePackets,
        parsed: tuple[RtpView, Vp8Descriptor] | None = None,
        wall: float | None = None,
        now: float | None = None,
    ) -> None:
        out = self.forward_now(
            data,
            source,
            parsed,
            time.time() if wall is None else wall,
            time.monotonic() if now is None else now,
        )
        if out is not None:
            await self.send_later(out, len(data))

    async def forward_frame(self, source: object, frame: EncodedFrame) -> None:
        """A frame of a frame-only source (gated at keyframes by the slot already)."""
        packets = self._frame_sources.get(id(source))
        if packets is None:
            packets = self._frame_sources[id(source)] = FramePackets(self.kind)
            if self.rewriter is not None:
                self.rewriter.switch()
        for packet in packets.packetize(frame):
            await self.forward(packet, packets)

    def forget_frame_source(self, source: object) -> None:
        self._frame_sources.pop(id(source), None)

    async def _fill_hole(self, seq: int, source: object) -> None:
        """The packet is gone for good: close the hole and ask its source for a keyframe."""
        rewriter = self.rewriter
        if rewriter is None or (ts := rewriter.timestamp_near(seq)) is None:
            return
        if isinstance(source, VideoFeed):
            source.request_keyframe()  # rate-limited by the publication
        try:
            await self.link.resend(rewriter.filler(seq, ts))
        except ConnectionError:
            return

    async def on_nack(self, seqs: list[int]) -> None:
        """Resend what the subscriber lost, from the caches of the sources it came from."""
        rewriter = self.rewriter
        if rewriter is None:
            return
        extensions = self.link.extensions(time.time())
        for seq in seqs:
            found = rewriter.lookup(seq)
            source_packet = None
            if found is not None:
                segment, source_seq = found
                cache: PacketCache | None = getattr(segment.source, "cache", None)
                source_packet = cache.get(source_seq) if cache is not None else None
            if source_packet is None or found is None:
                self.nacks_missed += 1
                await self._fill_hole(seq, found[0].source if found is not None else None)
                continue
            out = rewriter.rewrite_again(source_packet, found[0], extensions)
            if out is None:
                continue
            try:
                await self.link.resend(out)
            except ConnectionError:
                return
            self.retransmitted += 1

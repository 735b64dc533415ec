"""One slot's RTP numbering: publishers' packets rewritten into a continuous stream.

A slot shows one source at a time and switches between them. The subscriber must see one
stream: sequence numbers without a jump, timestamps that move on as time did, VP8 picture ids
and TL0PICIDX that continue, its own SSRC and payload type. `SlotRewriter` keeps a segment
per source shown (where its numbering starts and the deltas that map it), starts a new one
only at a keyframe (video) or at any packet (audio: every Opus packet decodes on its own),
and maps a NACKed sequence number back to the source packet it came from.
Work is on bytes: no per-packet objects beyond the output buffer.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

CLOCK_RATE = 90_000
# Clock ticks between the last packet of an old source and the first of a new one, at least.
SWITCH_GAP_TICKS = 6000
AUDIO_CLOCK_RATE = 48_000
AUDIO_SWITCH_GAP_TICKS = 960  # one 20 ms Opus packet
SEGMENTS_KEPT = 8  # how far back a NACK can reach across switches

_HEADER = struct.Struct("!BBHII")


class RtpView(NamedTuple):
    """Where the parts of one RTP packet lie (offsets into its bytes)."""

    seq: int
    timestamp: int
    ssrc: int
    payload_start: int
    payload_end: int  # padding excluded


def parse_rtp(packet: bytes) -> RtpView | None:
    """The header fields of an RTP packet, or None when it is not a well-formed one."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        return None
    first, _second, seq, timestamp, ssrc = _HEADER.unpack_from(packet)
    start = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 4 bytes, then `length` 32-bit words
        if len(packet) < start + 4:
            return None
        start += 4 + 4 * int.from_bytes(packet[start + 2 : start + 4], "big")
    end = len(packet)
    if first & 0x20:  # padding: its count is the last byte
        end -= packet[-1]
    if start > end:
        return None
    return RtpView(seq, timestamp, ssrc, start, end)


class Vp8Descriptor(NamedTuple):
    """The VP8 payload descriptor (RFC 7741 4.2) at the start of a payload."""

    length: int
    picture_id_at: int  # offset from the payload start; -1: absent
    picture_id_bits: int  # 7 or 15 (0: absent)
    tl0_at: int  # -1: absent
    keyframe_start: bool  # first packet of a keyframe


def parse_vp8(payload: bytes | memoryview) -> Vp8Descriptor | None:
    if not payload:
        return None
    first = payload[0]
    pos = 1
    pid_at = tl0_at = -1
    bits = 0
    if first & 0x80:  # X: extension byte follows
        if len(payload) < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id
            if len(payload) <= pos:
                return None
            pid_at = pos
            if payload[pos] & 0x80:  # M: 15 bits
                bits, pos = 15, pos + 2
            else:
                bits, pos = 7, pos + 1
        if ext & 0x40:  # L: TL0PICIDX
            tl0_at, pos = pos, pos + 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            pos += 1
    if len(payload) < pos:
        return None
    start_of_partition_0 = bool(first & 0x10) and (first & 0x07) == 0
    keyframe = start_of_partition_0 and len(payload) > pos and (payload[pos] & 0x01) == 0
    return Vp8Descriptor(pos, pid_at, bits, tl0_at, keyframe)


def parse_video(packet: bytes) -> tuple[RtpView, Vp8Descriptor] | None:
    """The RTP header and VP8 descriptor of a video packet, or None when malformed."""
    view = parse_rtp(packet)
    if view is None:
        return None
    vp8 = parse_vp8(memoryview(packet)[view.payload_start : view.payload_end])
    return None if vp8 is None else (view, vp8)


# An Opus payload has no descriptor: nothing to rewrite in it, and any packet may start a
# segment. One shared value, so parsing an audio packet makes no descriptor object.
NO_DESCRIPTOR = Vp8Descriptor(0, -1, 0, -1, True)


def parse_audio(packet: bytes) -> tuple[RtpView, Vp8Descriptor] | None:
    """The RTP header of an audio packet (with `NO_DESCRIPTOR`), or None when malformed."""
    view = parse_rtp(packet)
    return None if view is None else (view, NO_DESCRIPTOR)


def unwrap_rtx(packet: bytes, media_ssrc: int) -> bytes | None:
    """An RTX packet (RFC 4588) as the media packet it repairs: original sequence number
    from the first two payload bytes, the media SSRC, the rest of the payload."""
    view = parse_rtp(packet)
    if view is None or view.payload_end - view.payload_start < 2:
        return None
    start = view.payload_start
    header = bytearray(packet[:start])
    header[0] &= ~0x20  # the media packet has no padding
    header[2:4] = packet[start : start + 2]
    header[8:12] = media_ssrc.to_bytes(4, "big")
    return bytes(header) + packet[start + 2 : view.payload_end]


@dataclass
class Segment:
    """A run of one source's packets in the slot, and how its numbers map onto the slot's."""

    source: object
    out_first: int  # slot sequence number (unwrapped) of the source's first packet
    in_first: int  # the source's sequence number (unwrapped) of that packet
    in_highest: int  # highest source sequence number (unwrapped) seen in this segment
    ts_delta: int
    pid_delta: int
    tl0_delta: int

    def unwrap_in(self, seq: int) -> int:
        """`seq` (16 bits) unwrapped near the highest sequence number seen."""
        diff = (seq - self.in_highest) & 0xFFFF
        return self.in_highest + diff if diff < 0x8000 else self.in_highest - (0x10000 - diff)


class SlotRewriter:
    """Rewrites packets of the sources a slot shows into the slot's own stream."""

    def __init__(self, ssrc: int, payload_type: int, kind: str = "video") -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.kind = kind
        audio = kind == "audio"
        self._parse = parse_audio if audio else parse_video
        self._clock_rate = AUDIO_CLOCK_RATE if audio else CLOCK_RATE
        self._switch_gap = AUDIO_SWITCH_GAP_TICKS if audio else SWITCH_GAP_TICKS
        self.segments: deque[Segment] = deque(maxlen=SEGMENTS_KEPT)
        self.waiting = True  # for a keyframe to start the next segment at
        self.highest_out: int | None = None  # unwrapped slot sequence number
        self._last_ts: int | None = None
        self._last_ts_at = 0.0
        self._last_pid: int | None = None
        self._last_tl0: int | None = None
        self.packets_out = 0
        self.dropped_waiting = 0

    def switch(self) -> None:
        """The slot shows another source (or the same one again) from its next keyframe."""
        self.waiting = True

    @property
    def current(self) -> Segment | None:
        return self.segments[-1] if self.segments and not self.waiting else None

    def rewrite(
        self,
        packet: bytes,
        source: object,
        extensions: bytes,
        now: float,
        parsed: tuple[RtpView, Vp8Descriptor] | None = None,
    ) -> bytes | None:
        """`packet` (a source's RTP packet) as the slot sends it, or None to drop it.

        `extensions`: the subscriber's header extension block (with its ids), or b"".
        `now`: monotonic seconds, to carry real time across a switch into the timestamps.
        `parsed`: `parse_video(packet)` (`parse_audio` for audio) when the caller has it
        (once per packet, not per slot).
        """
        if parsed is None:
            parsed = self._parse(packet)
            if parsed is None:
                return None
        view, vp8 = parsed
        segment = self.current
        if segment is None or segment.source is not source:
            if not vp8.keyframe_start:
                self.waiting = True
                self.dropped_waiting += 1
                return None
            segment = self._start(source, view, packet, vp8, now)
        in_seq = segment.unwrap_in(view.seq)
        if in_seq < segment.in_first:
            return None  # sent before the switch: not part of this segment
        if in_seq > segment.in_highest:
            segment.in_highest = in_seq
        out_seq = segment.out_first + in_seq - segment.in_first
        out = self._emit(packet, view, vp8, segment, out_seq, extensions)
        if self.highest_out is None or out_seq > self.highest_out:
            self.highest_out = out_seq
            self._last_ts = (view.timestamp + segment.ts_delta) & 0xFFFFFFFF
            self._last_ts_at = now
            if vp8.picture_id_at >= 0:
                self._last_pid = self._pid_out(packet, view, vp8, segment)
            if vp8.tl0_at >= 0:
                self._last_tl0 = (
                    packet[view.payload_start + vp8.tl0_at] + segment.tl0_delta
                ) & 0xFF
        self.packets_out += 1
        return out

    def lookup(self, seq: int) -> tuple[Segment, int] | None:
        """The segment a NACKed slot sequence number (16 bits) belongs to, and the source
        sequence number (16 bits) it was made from; None if it was never sent or is too old."""
        if self.highest_out is None:
            return None
        diff = (self.highest_out - seq) & 0xFFFF
        out_seq = self.highest_out - diff
        for segment in reversed(self.segments):
            if out_seq >= segment.out_first:
                in_seq = segment.in_first + out_seq - segment.out_first
                return (segment, in_seq & 0xFFFF) if in_seq <= segment.in_highest else None
        return None

    def rewrite_again(self, packet: bytes, segment: Segment, extensions: bytes) -> bytes | None:
        """A source packet rewritten as it was first sent (for a retransmission)."""
        parsed = self._parse(packet)
        if parsed is None:
            return None
        view, vp8 = parsed
        out_seq = segment.out_first + segment.unwrap_in(view.seq) - segment.in_first
        return self._emit(packet, view, vp8, segment, out_seq, extensions)

    def filler(self, seq: int, timestamp: int) -> bytes:
        """A padding-only packet at slot sequence number `seq`: it closes a hole the source
        can no longer fill, so a receiver that waits for contiguous packets (aiortc's jitter
        buffer does, for good) moves on to the keyframe asked for meanwhile."""
        return (
            _HEADER.pack(0xA0, self.payload_type, seq & 0xFFFF, timestamp & 0xFFFFFFFF, self.ssrc)
            + b"\x00\x00\x00\x04"
        )

    def timestamp_near(self, seq: int) -> int | None:
        """The slot timestamp of the packet sent last before `seq` (16 bits), if known."""
        return self._last_ts if self.highest_out is not None else None

    # --- inside ---------------------------------------------------------------------
    def _start(
        self, source: object, view: RtpView, packet: bytes, vp8: Vp8Descriptor, now: float
    ) -> Segment:
        if self.highest_out is None or self._last_ts is None:
            out_first, ts_delta = view.seq, 0
        else:
            out_first = self.highest_out + 1
            # The new source starts as far after the old one's last packet as time really
            # passed (at least a gap): browsers read a smaller step as a packet arriving late.
            elapsed = int((now - self._last_ts_at) * self._clock_rate)
            first_ts = self._last_ts + max(self._switch_gap, elapsed)
            ts_delta = first_ts - view.timestamp
        pid_delta = tl0_delta = 0
        if vp8.picture_id_at >= 0 and self._last_pid is not None:
            pid_delta = self._last_pid + 1 - self._read_pid(packet, view, vp8)
        if vp8.tl0_at >= 0 and self._last_tl0 is not None:
            tl0_delta = self._last_tl0 + 1 - packet[view.payload_start + vp8.tl0_at]
        segment = Segment(source, out_first, view.seq, view.seq, ts_delta, pid_delta, tl0_delta)
        self.segments.append(segment)
        self.waiting = False
        return segment

    @staticmethod
    def _read_pid(packet: bytes, view: RtpView, vp8: Vp8Descriptor) -> int:
        at = view.payload_start + vp8.picture_id_at
        if vp8.picture_id_bits == 15:
            return ((packet[at] & 0x7F) << 8) | packet[at + 1]
        return packet[at] & 0x7F

    def _pid_out(self, packet: bytes, view: RtpView, vp8: Vp8Descriptor, segment: Segment) -> int:
        mask = 0x7FFF if vp8.picture_id_bits == 15 else 0x7F
        return (self._read_pid(packet, view, vp8) + segment.pid_delta) & mask

    def _emit(
        self,
        packet: bytes,
        view: RtpView,
        vp8: Vp8Descriptor,
        segment: Segment,
        out_seq: int,
        extensions: bytes,
    ) -> bytes:
        first = 0x80 | (packet[0] & 0x20) | (0x10 if extensions else 0)
        second = (packet[1] & 0x80) | self.payload_type
        timestamp = (view.timestamp + segment.ts_delta) & 0xFFFFFFFF
        start = view.payload_start
        if vp8 is NO_DESCRIPTOR:
            return b"".join(
                (
                    _HEADER.pack(first, second, out_seq & 0xFFFF, timestamp, self.ssrc),
                    extensions,
                    packet[start:],
                )
            )
        descriptor = bytearray(packet[start : start + vp8.length])
        if vp8.picture_id_at >= 0:
            pid = self._pid_out(packet, view, vp8, segment)
            at = vp8.picture_id_at
            if vp8.picture_id_bits == 15:
                descriptor[at] = 0x80 | (pid >> 8)
                descriptor[at + 1] = pid & 0xFF
            else:
                descriptor[at] = pid
        if vp8.tl0_at >= 0:
            descriptor[vp8.tl0_at] = (descriptor[vp8.tl0_at] + segment.tl0_delta) & 0xFF
        return b"".join(
            (
                _HEADER.pack(first, second, out_seq & 0xFFFF, timestamp, self.ssrc),
                extensions,
                descriptor,
                packet[start + vp8.length :],
            )
        )


def extension_block(elements: list[tuple[int, bytes]]) -> bytes:
    """A one-byte header extension block (RFC 8285) with `elements` (id 1-14, 1-16 bytes)."""
    body = b"".join(
        bytes([(ext_id << 4) | (len(value) - 1)]) + value
        for ext_id, value in elements
        if 0 < ext_id < 15
    )
    if not body:
        return b""
    body += b"\x00" * (-len(body) % 4)
    return b"\xbe\xde" + (len(body) // 4).to_bytes(2, "big") + body


class ExtensionTemplate:
    """A subscriber's header extension block (mid, abs-send-time), built once: per packet
    only the 24-bit abs-send-time value changes."""

    def __init__(self, mid: tuple[int, bytes] | None, abs_send_time_id: int) -> None:
        elements = [mid] if mid else []
        self._abs = 0 < abs_send_time_id < 15
        if self._abs:
            elements.append((abs_send_time_id, b"\x00\x00\x00"))
        block = extension_block(elements)
        # With abs-send-time, its 3 value bytes sit right after its element header, which
        # comes last before the padding.
        body_end = 4 + sum(1 + len(v) for i, v in elements if 0 < i < 15)
        self._head = block[: body_end - 3] if self._abs else block
        self._tail = block[body_end:] if self._abs else b""

    def at(self, wall: float) -> bytes:
        """The block for a packet sent at `wall` (time.time())."""
        if not self._abs:
            return self._head
        # abs-send-time: NTP seconds (from 1900) in 6.18 fixed point, 24 bits.
        value = int((wall + 2_208_988_800) * (1 << 18)) & 0xFFFFFF
        return self._head + value.to_bytes(3, "big") + self._tail

"""Encoded media as it moves through the box: one VP8 frame or one Opus packet.

`EncodedFrame` is what a publisher's remote track yields once the passthrough decoder is
installed, and what subscriber tracks hand to `RTCRtpSender`, which packs it into RTP
without re-encoding (anything that is not an `av.Frame` takes the sender's pack path).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

VIDEO_TIME_BASE = Fraction(1, 90000)
AUDIO_TIME_BASE = Fraction(1, 48000)
# What one RTP packet adds on the wire: RTP 12 + header extensions (mid, abs-send-time) ~12
# + SRTP tag 10 + UDP 8 + IPv4 20 + link framing ~8-14 bytes. At 50 voice packets a second
# that is as much as the voice itself, so rates are planned with it.
PACKET_OVERHEAD_BYTES = 70
# Payload bytes per RTP packet when a VP8 frame is split (aiortc's packetizer stays under this).
PACKET_PAYLOAD_BYTES = 1200


def vp8_is_keyframe(data: bytes) -> bool:
    """A VP8 frame is a keyframe when the P bit of its first byte is 0 (RFC 6386 9.1)."""
    return bool(data) and (data[0] & 0x01) == 0


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded frame with its RTP-clock timestamp; duck-types `av.Packet` for `pack()`."""

    data: bytes
    pts: int
    time_base: Fraction
    kind: str
    keyframe: bool = False
    # The jitter buffer skipped lost packets before this frame: it may reference lost data.
    after_gap: bool = False
    # RFC 6464 level of the loudest packet in this frame: 0 is loudest, 127 silence.
    audio_level: int | None = None
    # Split into RTP payloads of at most this many bytes (None: aiortc's ~1300). On a weak
    # link a full-size video packet holds the voice packet behind it ~50 ms (see seams.py).
    max_payload: int | None = None

    def __bytes__(self) -> bytes:
        return self.data

    def __len__(self) -> int:
        return len(self.data)

    @property
    def wire_size(self) -> int:
        """Bytes this frame takes on the wire once packetized (headers included)."""
        packets = 1 + len(self.data) // (self.max_payload or PACKET_PAYLOAD_BYTES)
        return len(self.data) + packets * PACKET_OVERHEAD_BYTES

    def with_pts(self, pts: int) -> EncodedFrame:
        return replace(self, pts=pts)

    def split(self, max_payload: int | None) -> EncodedFrame:
        """This frame, to be sent in RTP payloads of at most max_payload bytes."""
        return self if max_payload == self.max_payload else replace(self, max_payload=max_payload)


class PassthroughDecoder:
    """Stands in for aiortc's decoder: turns a reassembled `JitterFrame` into an `EncodedFrame`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.time_base = VIDEO_TIME_BASE if kind == "video" else AUDIO_TIME_BASE

    def decode(self, encoded_frame: object) -> list[EncodedFrame]:
        data: bytes = encoded_frame.data  # type: ignore[attr-defined]
        return [
            EncodedFrame(
                data=data,
                pts=encoded_frame.timestamp,  # type: ignore[attr-defined]
                time_base=self.time_base,
                kind=self.kind,
                keyframe=self.kind == "video" and vp8_is_keyframe(data),
                after_gap=getattr(encoded_frame, "after_gap", False),
                audio_level=getattr(encoded_frame, "audio_level", None),
            )
        ]

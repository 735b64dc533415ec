"""Weak links get video in small RTP packets, so a voice packet never waits long behind one."""

from __future__ import annotations

import asyncio
from fractions import Fraction

from aiortc.codecs import get_encoder
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from appliance.media.adaptive import MIN_VIDEO_PAYLOAD, video_payload_limit
from appliance.media.aiortc_glue.seams import install_forwarding
from appliance.media.encoded import EncodedFrame
from appliance.media.slot import SlotTrack

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)


def frame(size: int, max_payload: int | None = None) -> EncodedFrame:
    data = bytes([0x10]) + bytes(n % 251 for n in range(size - 1))
    return EncodedFrame(data, 3000, Fraction(1, 90000), "video", keyframe=True,
                        max_payload=max_payload)


def packed(encoder: object, f: EncodedFrame) -> list[tuple[VpxPayloadDescriptor, bytes]]:
    payloads, timestamp = encoder.pack(f)  # type: ignore[attr-defined]
    assert timestamp == 3000
    return [VpxPayloadDescriptor.parse(p) for p in payloads]


def test_a_frame_is_split_at_its_max_payload_and_reassembles() -> None:
    loop = asyncio.new_event_loop()
    install_forwarding(loop)
    encoder = get_encoder(VP8)
    big = frame(2000)
    default = packed(encoder, big)
    assert len(default) == 2  # aiortc's own ~1300-byte packets without a limit
    small = packed(encoder, frame(2000, max_payload=400))
    assert [len(data) for _, data in small] == [400] * 5
    assert b"".join(data for _, data in small) == big.data
    assert [d.partition_start for d, _ in small] == [1, 0, 0, 0, 0]
    # One picture id per frame, counting on from the previous frame.
    assert {d.picture_id for d, _ in small} == {default[0][0].picture_id + 1}
    loop.close()


def test_a_slot_hands_its_video_over_split_at_its_limit() -> None:
    async def scenario() -> None:
        slot = SlotTrack("video", "1")

        class Source:
            participant_id, kind, slots = "p", "video", set()

            def request_keyframe(self) -> bool:
                return True

        source = Source()
        slot.attach(source)  # type: ignore[arg-type]
        slot.push(source, frame(2000))  # type: ignore[arg-type]
        assert (await slot.recv()).max_payload is None
        before = slot.bytes_out
        slot.max_payload = 400
        slot.push(source, frame(2000))  # type: ignore[arg-type]
        out = await slot.recv()
        assert out.max_payload == 400
        assert slot.bytes_out - before == 2000 + 6 * 70  # wire bytes count the extra headers

    asyncio.run(scenario())


def test_payload_limit_follows_a_weak_links_estimate_only() -> None:
    assert video_payload_limit(5_000_000, remote=False) is None  # LAN
    assert video_payload_limit(1_000_000, remote=True) is None  # 3G and better: aiortc's
    # EDGE: 200 kbps -> 20 ms is 500 bytes with headers.
    assert video_payload_limit(200_000, remote=True) == 500 - 70
    assert video_payload_limit(60_000, remote=True) == MIN_VIDEO_PAYLOAD

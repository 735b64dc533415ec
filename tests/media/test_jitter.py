"""Jitter buffers on the box.

One lost video packet holds the bounded jitter buffer for at most `MAX_HOLD_S`; forwarded
audio never waits (a real `RTCRtpReceiver` on a forwarding loop releases the packet after a
loss at once), while receivers that decode keep aiortc's buffering.
"""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack, RTCRtpReceiver
from aiortc.rtp import RtpPacket

from appliance.media.aiortc_glue.seams import install_forwarding, is_forwarding_loop
from appliance.media.encoded import EncodedFrame
from appliance.media.jitter import MAX_HOLD_S, BoundedJitterBuffer, ForwardingAudioBuffer

pytestmark = pytest.mark.timeout(20)


def frame_packets(n: int) -> list[RtpPacket]:
    """Frame n of a video stream: two RTP packets sharing one timestamp."""
    packets = []
    for i in range(2):
        packet = RtpPacket(payload_type=96, sequence_number=2 * n + i, timestamp=3000 * n,
                           payload=bytes([n, i]) * 50)
        packet._data = packet.payload  # what RTCRtpReceiver's depayloader sets
        packets.append(packet)
    return packets


def test_a_lost_packet_is_skipped_after_the_bounded_wait() -> None:
    buffer = BoundedJitterBuffer(capacity=128, is_video=True)
    released = []
    for n in range(3):
        for packet in frame_packets(n):
            _pli, frame = buffer.add(packet)
            if frame is not None:
                released.append(frame)
    assert [f.timestamp for f in released] == [0, 3000]

    lost = frame_packets(3)[1]  # frame 3 loses its second packet
    started = time.monotonic()
    pli_seen = False
    after_gap = []
    n = 3
    while not after_gap and time.monotonic() - started < 3:
        for packet in frame_packets(n):
            if packet.sequence_number == lost.sequence_number:
                continue
            pli, frame = buffer.add(packet)
            pli_seen = pli_seen or pli
            if frame is not None:
                released.append(frame)
                if frame.after_gap:  # type: ignore[attr-defined]
                    after_gap.append((frame, time.monotonic() - started))
        n += 1
        time.sleep(1 / 15)
    assert after_gap, "the buffer never skipped the gap: video would freeze"
    frame, waited = after_gap[0]
    assert waited < MAX_HOLD_S + 0.5  # well under one second of frozen video
    assert frame.timestamp > 3000 * 3  # the incomplete frame 3 was dropped, not forwarded
    assert pli_seen, "skipping a gap must ask the publisher for a keyframe"
    assert buffer.gaps_skipped == 1
    # after the skip the stream flows again, in order, with no further gap marks
    flowing = []
    for m in range(n, n + 6):
        for packet in frame_packets(m):
            _pli, frame = buffer.add(packet)
            if frame is not None:
                flowing.append(frame)
    stamps = [f.timestamp for f in flowing]
    assert len(stamps) >= 6 and stamps == sorted(set(stamps))
    assert not any(f.after_gap for f in flowing)  # type: ignore[attr-defined]


OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
SSRC = 4242


def opus_packet(n: int, level: int | None = None) -> RtpPacket:
    """Audio packet n of a 20 ms Opus stream, depayloaded as the receiver does."""
    packet = RtpPacket(payload_type=OPUS.payloadType, sequence_number=(65530 + n) % 65536,
                       timestamp=960 * n, ssrc=SSRC, payload=bytes([0xFC, n % 256]) * 20)
    packet._data = packet.payload
    if level is not None:
        packet.extensions.audio_level = (True, level)
    return packet


def test_the_receiver_builds_audio_and_video_buffers_as_the_seam_expects() -> None:
    source = inspect.getsource(RTCRtpReceiver)
    assert "JitterBuffer(capacity=16, prefetch=4)" in source  # audio
    # the depayloaded bytes are on packet._data before the buffer sees the packet
    handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert handle.index("packet._data = depayload") < handle.index("jitter_buffer.add(packet)")


def test_forwarded_audio_is_released_as_it_arrives_and_never_reordered() -> None:
    buffer = ForwardingAudioBuffer(capacity=16, prefetch=4)
    released = []
    for n in (0, 1, 3, 4):  # packet 2 is lost (sequence numbers wrap past 65535 here)
        pli, frame = buffer.add(opus_packet(n))
        assert not pli
        assert frame is not None, f"packet {n} was held"
        released.append(frame.timestamp)
    assert released == [0, 960, 3 * 960, 4 * 960]
    # packet 2 turns up late, and packet 4 twice: both dropped, the stream goes on in order
    assert buffer.add(opus_packet(2)) == (False, None)
    assert buffer.add(opus_packet(4)) == (False, None)
    assert buffer.dropped_late == 2
    _pli, frame = buffer.add(opus_packet(5))
    assert frame is not None and frame.timestamp == 5 * 960
    # a sender restarting far back in sequence space is followed, as aiortc's buffer does
    _pli, frame = buffer.add(opus_packet(5 - 500))
    assert frame is not None


def test_forwarded_audio_keeps_its_level() -> None:
    buffer = ForwardingAudioBuffer()
    _pli, loud = buffer.add(opus_packet(0, level=12))
    _pli, bare = buffer.add(opus_packet(1))
    assert loud is not None and bare is not None
    assert loud.audio_level == 12  # type: ignore[attr-defined]
    assert bare.audio_level is None  # type: ignore[attr-defined]
    assert not loud.after_gap  # type: ignore[attr-defined]


async def _receiver(kind: str) -> RTCRtpReceiver:
    ice = RTCIceTransport(RTCIceGatherer(iceServers=[]))
    receiver = RTCRtpReceiver(kind, RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()]))
    receiver._track = RemoteStreamTrack(kind=kind)
    return receiver


def _buffer_of(receiver: RTCRtpReceiver) -> object:
    return receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]


def test_a_lost_packet_does_not_delay_audio_through_a_forwarding_receiver() -> None:
    async def scenario() -> list[EncodedFrame]:
        install_forwarding(asyncio.get_running_loop())
        receiver = await _receiver("audio")
        assert isinstance(_buffer_of(receiver), ForwardingAudioBuffer)
        encoding = RTCRtpDecodingParameters(ssrc=SSRC, payloadType=OPUS.payloadType)
        await receiver.receive(RTCRtpReceiveParameters(codecs=[OPUS], encodings=[encoding]))
        got = []
        try:
            for n in (0, 1, 3, 2, 4):  # 2 is lost, then arrives after 3
                await receiver._handle_rtp_packet(opus_packet(n, level=30 + n), 0)
                if n == 2:
                    continue  # dropped: nothing to wait for
                frame = await asyncio.wait_for(receiver._track.recv(), timeout=1.0)
                got.append(frame)
            assert receiver._track._queue.empty()
        finally:
            await receiver.stop()
        return got

    frames = asyncio.run(scenario())
    assert all(isinstance(f, EncodedFrame) and f.kind == "audio" for f in frames)
    assert [f.pts for f in frames] == [0, 960, 3 * 960, 4 * 960]
    assert [f.audio_level for f in frames] == [30, 31, 33, 34]


def test_video_and_decoding_receivers_keep_their_buffers() -> None:
    async def forwarding() -> tuple[object, object]:
        install_forwarding(asyncio.get_running_loop())
        return _buffer_of(await _receiver("video")), _buffer_of(await _receiver("audio"))

    async def decoding() -> tuple[bool, object]:
        return is_forwarding_loop(), _buffer_of(await _receiver("audio"))

    video, audio = asyncio.run(forwarding())
    assert isinstance(video, BoundedJitterBuffer) and video._is_video
    assert video.capacity == 512
    assert isinstance(audio, ForwardingAudioBuffer)
    forwards, decoding_audio = asyncio.run(decoding())  # a fresh loop: not forwarding
    assert not forwards
    assert isinstance(decoding_audio, BoundedJitterBuffer)
    assert (decoding_audio.capacity, decoding_audio._prefetch) == (16, 4)
    # aiortc's buffering: with prefetch 4 nothing comes out of the first few packets
    assert all(decoding_audio.add(opus_packet(n))[1] is None for n in range(4))

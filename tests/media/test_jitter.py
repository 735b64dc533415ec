"""One lost video packet holds the bounded jitter buffer for at most `MAX_HOLD_S`."""

from __future__ import annotations

import time

import pytest
from aiortc.rtp import RtpPacket

from appliance.media.jitter import MAX_HOLD_S, BoundedJitterBuffer

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

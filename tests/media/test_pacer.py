"""The pacer lets voice and RTCP jump a queue of video, and sends every video packet."""

from __future__ import annotations

import asyncio

import pytest

from appliance.media.adaptive import pacing_rate
from appliance.media.pacer import Pacer

pytestmark = pytest.mark.timeout(30)

VIDEO, AUDIO = 0x1111, 0x2222


def _rtp(ssrc: int, seq: int, size: int) -> bytes:
    header = bytes([0x80, 96]) + seq.to_bytes(2) + (0).to_bytes(4) + ssrc.to_bytes(4)
    return header + bytes(size - len(header))


class Wire:
    """Stands in for the DTLS transport's `_send_rtp`: records what leaves, in order."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(data)


def test_voice_jumps_the_video_queue_and_no_video_is_lost() -> None:
    async def scenario() -> None:
        wire = Wire()
        pacer = Pacer(wire, {VIDEO}, rate_bps=200_000)  # type: ignore[arg-type]
        assert wire._send_rtp == pacer.send  # installed on the transport
        keyframe = [_rtp(VIDEO, n, 1200) for n in range(8)]  # a ~10 KB picture, one burst
        for packet in keyframe:
            await wire._send_rtp(packet)
        voice = _rtp(AUDIO, 0, 120)
        await wire._send_rtp(voice)
        rtcp = bytes([0x80, 200]) + bytes(26)  # a sender report
        await wire._send_rtp(rtcp)
        # Voice and RTCP are out at once, ahead of most of the picture.
        assert voice in wire.sent and rtcp in wire.sent
        assert wire.sent.index(voice) < 3
        for _ in range(200):
            if all(p in wire.sent for p in keyframe):
                break
            await asyncio.sleep(0.02)
        assert [p for p in wire.sent if p in keyframe] == keyframe  # all of it, in order
        assert pacer.dropped == 0 and pacer.delayed > 0
        await pacer.stop()
        assert wire._send_rtp != pacer.send  # the transport's own send is back

    asyncio.run(scenario())


def test_video_beyond_two_seconds_at_the_rate_is_dropped_oldest_first() -> None:
    async def scenario() -> None:
        wire = Wire()
        pacer = Pacer(wire, {VIDEO}, rate_bps=32_000)  # type: ignore[arg-type]
        packets = [_rtp(VIDEO, n, 1200) for n in range(20)]  # 24 KB: 6 s at 32 kbps
        for packet in packets:
            await wire._send_rtp(packet)
        assert pacer.dropped > 0
        assert packets[-1] not in wire.sent  # the newest waits; the oldest went
        await pacer.stop()

    asyncio.run(scenario())


def test_the_rate_counts_what_each_packet_adds_on_the_wire() -> None:
    # 40 small video packets of 100 bytes at 64 kbps: 4 KB of RTP, 6 KB on the link with the
    # SRTP tag, UDP, IP and Ethernet (52 bytes each). Paced by RTP bytes alone they would
    # leave in ~0.5 s; by wire bytes they take ~0.75 s.
    async def scenario() -> float:
        wire = Wire()
        pacer = Pacer(wire, {VIDEO}, rate_bps=64_000)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(40):
            await wire._send_rtp(_rtp(VIDEO, n, 100))
        while len(wire.sent) < 40:
            await asyncio.sleep(0.01)
        await wire._send_rtp(_rtp(AUDIO, 0, 100))
        # What left counts as it reached the link: what the estimator is told was sent.
        assert pacer.wire_bytes_out == 41 * (100 + 52)
        await pacer.stop()
        return loop.time() - start

    assert asyncio.run(scenario()) >= 0.7


def test_a_weak_links_pacer_runs_at_the_plan_not_at_a_probes_allowance() -> None:
    # EDGE probing: allowance 216 kbps, the plan (voices and a low tier) costs 133: paced at
    # 133 x 1.3, room for the low tier's keyframes, not for the probe's whole allowance.
    assert pacing_rate(216_000, 133_000) == pytest.approx(172_900)
    # Never above the allowance, and above 300 kbps a margin over it (smoothing only).
    assert pacing_rate(120_000, 110_000) == 120_000
    assert pacing_rate(1_000_000, 400_000) == 1_250_000
    # Backing off, the link has a queue: what the pacer holds leaves at the allowance.
    assert pacing_rate(1_000_000, 400_000, backing_off=True) == 1_000_000

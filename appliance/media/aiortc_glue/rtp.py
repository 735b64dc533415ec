"""Named operations on aiortc's RTP senders, receivers and packets that reach past its API.

Each one says which private part of aiortc 1.16.0 it uses; `tests/media/test_aiortc_seams.py`
fails when an upgrade moves one of them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtp import RtcpSrPacket, RtpPacket

RtcpFilter = Callable[[Any], Awaitable[Any | None]]


def tap_rtcp(sender: RTCRtpSender, on_packet: RtcpFilter) -> None:
    """Show every RTCP packet the sender receives to `on_packet` before aiortc handles it.

    `on_packet` returns the packet aiortc should handle (the same one or a trimmed one), or
    None to keep it from aiortc. Wraps `RTCRtpSender._handle_rtcp_packet`.
    """
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        passed = await on_packet(packet)
        if passed is not None:
            await original(passed)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def watch_sender_reports(
    sender: RTCRtpSender, on_report: Callable[[RtcpSrPacket, float], None]
) -> None:
    """Call `on_report(sr, time.time())` for every sender report the sender sends from now on.

    Wraps `RTCRtpSender._send_rtcp`, through which its RTCP loop sends each compound packet.
    """
    original = sender._send_rtcp

    async def send(packets: list[Any]) -> None:
        now = time.time()
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                on_report(packet, now)
        await original(packets)

    sender._send_rtcp = send  # type: ignore[method-assign]


def route_keyframes(sender: RTCRtpSender, request_keyframe: Callable[[], object]) -> None:
    """Send the subscriber's keyframe requests (PLI, FIR) to `request_keyframe`.

    In pack mode the sender ignores them itself, so the SFU asks the publisher instead.
    Replaces `RTCRtpSender._send_keyframe`.
    """
    sender._send_keyframe = request_keyframe  # type: ignore[method-assign,assignment]


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC the sender's media goes out under (`RTCRtpSender._ssrc`)."""
    return sender._ssrc


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The sender's media SSRC and its retransmission stream's (`_ssrc`, `_rtx_ssrc`)."""
    return sender._ssrc, sender._rtx_ssrc


def retransmission_ssrcs(receiver: RTCRtpReceiver) -> set[int]:
    """SSRCs the publisher retransmits under (RTX), as aiortc learnt them from the SDP.

    Reads `RTCRtpReceiver.__rtx_ssrc` (name-mangled).
    """
    return set(getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {}))


async def request_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the publisher for a keyframe of `media_ssrc` (`RTCRtpReceiver._send_rtcp_pli`)."""
    await receiver._send_rtcp_pli(media_ssrc)


def rtp_payload(packet: RtpPacket) -> bytes:
    """The packet's codec payload with its payload descriptor removed, as aiortc's receiver
    attached it (`RtpPacket._data`) before the jitter buffer."""
    return packet._data  # type: ignore[attr-defined]


def depayloaded(packet: RtpPacket) -> bool:
    """Make sure a video packet's `rtp_payload` is depacketized: one that arrived while its
    frames were not wanted kept its raw VP8 payload (`forwarding.UNWANTED`); if frames are
    wanted by the time it reaches the jitter buffer, depacketize it now. False if that
    payload is not valid VP8 (aiortc drops such a packet too)."""
    if not getattr(packet, "_clinicbox_raw", False) or packet._data is not packet.payload:  # type: ignore[attr-defined]
        return True
    try:
        packet._data = vp8_depayload(packet.payload)  # type: ignore[attr-defined]
    except ValueError:
        return False
    return True

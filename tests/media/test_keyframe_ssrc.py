"""A keyframe request names the publisher's media SSRC, also when its retransmission stream
(RTX) was heard first: Chromium opens a call with RTX padding, and ignores a PLI for it."""

from __future__ import annotations

import asyncio

from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import (
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtpPacket

from appliance.media.aiortc_glue.seams import install_forwarding
from appliance.media.publication import Publication

MEDIA, RTX = 1111, 2222
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
VP8_RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)


class _Video(MediaStreamTrack):
    kind = "video"

    async def recv(self) -> None:  # type: ignore[override]
        raise NotImplementedError  # the publication here only asks for keyframes


def test_a_keyframe_request_names_the_media_ssrc_not_rtx() -> None:
    async def scenario() -> list[int]:
        install_forwarding(asyncio.get_running_loop())  # the box's receivers decode nothing
        ice = RTCIceTransport(RTCIceGatherer(iceServers=[]))
        receiver = RTCRtpReceiver(
            "video", RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])
        )
        encoding = RTCRtpDecodingParameters(
            ssrc=MEDIA, payloadType=96, rtx=RTCRtpRtxParameters(ssrc=RTX)
        )
        receiver._track = RemoteStreamTrack(kind="video")
        await receiver.receive(RTCRtpReceiveParameters(codecs=[VP8, VP8_RTX], encodings=[encoding]))
        receiver._set_rtcp_ssrc(42)
        sent: list[int] = []

        async def capture(packet: object) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
                sent.append(packet.media_ssrc)

        receiver._send_rtcp = capture  # type: ignore[method-assign]
        try:
            # RTX padding first (a bandwidth probe: original sequence number, then padding),
            # then the pictures themselves.
            await receiver._handle_rtp_packet(
                RtpPacket(
                    payload_type=97, ssrc=RTX, sequence_number=1, payload=b"\\x00\\x01" + bytes(200)
                ),
                0,
            )
            for n in range(3):
                await receiver._handle_rtp_packet(
                    RtpPacket(
                        payload_type=96,
                        ssrc=MEDIA,
                        sequence_number=10 + n,
                        timestamp=3000 * n,
                        payload=b"\\x10\\x00\\x00\\x00",
                    ),
                    0,
                )
            publication = Publication("p", _Video(), receiver)
            assert publication.request_keyframe()
            await asyncio.sleep(0.05)
        finally:
            await receiver.stop()
        return sent

    # Every PLI (the jitter buffer asks for a first keyframe too) names the media SSRC.
    sent = asyncio.run(scenario())
    assert sent and set(sent) == {MEDIA}, sent

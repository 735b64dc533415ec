"""Fails loudly when an aiortc or aioice upgrade moves a private part the SFU relies on.

This guards `appliance/media/aiortc_glue/` and nothing else: only that package reaches past
aiortc's API, and `test_aiortc_boundary.py` checks that every private name it uses is named
here."""

from __future__ import annotations

import inspect
from fractions import Fraction

import aioice.ice
import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender, rtcrtpreceiver
from aiortc.codecs import get_encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from appliance.media.encoded import EncodedFrame


def test_aiortc_is_the_pinned_version() -> None:
    assert aiortc.__version__ == "1.16.0", "re-check every seam in appliance/media/aiortc_glue/"


def test_decoder_worker_seam() -> None:
    params = list(inspect.signature(rtcrtpreceiver.decoder_worker).parameters)
    assert params == ["loop", "input_q", "output_q", "decode_error"]
    # The receiver starts the worker by its module-level name.
    assert "target=decoder_worker" in inspect.getsource(RTCRtpReceiver.receive)


def test_jitter_buffer_seam() -> None:
    assert "JitterBuffer(capacity=512, is_video=True)" in inspect.getsource(RTCRtpReceiver)
    jb = JitterBuffer(capacity=16)
    for name in ("_origin", "_packets", "_capacity", "_prefetch", "_is_video"):
        assert hasattr(jb, name), name
    assert callable(jb._remove_frame) and callable(jb.remove)


def test_sender_packs_anything_that_is_not_a_frame() -> None:
    source = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert "isinstance(data, Frame)" in source and "self.__encoder.pack(data)" in source
    vp8 = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97))
    data = b"\x10\x02\x00\x9d\x01\x2a" + b"\0" * 40
    frame = EncodedFrame(data, 3000, Fraction(1, 90000), "video")
    payloads, timestamp = vp8.pack(frame)
    assert timestamp == 3000 and payloads
    opus = get_encoder(
        RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)
    )
    payloads, timestamp = opus.pack(EncodedFrame(b"\xfc\xff", 960, Fraction(1, 48000), "audio"))
    assert payloads == [b"\xfc\xff"] and timestamp == 960


def test_keyframe_seams() -> None:
    assert "self._send_keyframe()" in inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) == [
        "self", "media_ssrc"
    ]


def test_host_address_seam() -> None:
    assert list(inspect.signature(aioice.ice.get_host_addresses).parameters) == [
        "use_ipv4", "use_ipv6"
    ]
    assert "get_host_addresses(" in inspect.getsource(aioice.ice.Connection.gather_candidates)


def test_adaptation_seams() -> None:
    # RTCP reaches each slot sender through this method (wrapped per sender by adaptation).
    assert "await recipient._handle_rtcp_packet(packet)" in inspect.getsource(
        aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data
    )
    # The raw RTT matches each block's LSR to an SR seen leaving through _send_rtcp.
    assert "await self._send_rtcp(packets)" in inspect.getsource(RTCRtpSender._run_rtcp)
    assert list(inspect.signature(RTCRtpSender._send_rtcp).parameters) == ["self", "packets"]
    # Every RTP and RTCP packet of a bundled peer connection leaves through this (the pacer).
    assert "await self.transport._send_rtp(packet_bytes)" in inspect.getsource(
        RTCRtpSender._run_rtp
    )
    assert list(inspect.signature(
        aiortc.rtcdtlstransport.RTCDtlsTransport._send_rtp).parameters) == ["self", "data"]
    # Which address media flows from: aioice's nominated pairs.
    assert "self._nominated[pair.component] = pair" in inspect.getsource(aioice.ice.Connection)
    # Keyframe requests skip retransmission SSRCs: aiortc's map of them, filled from SDP.
    assert "self.__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc" in inspect.getsource(
        RTCRtpReceiver.receive
    )
    # Whether anything arrives from a subscriber: its transport's datagram count.
    dtls = aiortc.rtcdtlstransport.RTCDtlsTransport
    assert "self.__rx_packets += 1" in inspect.getsource(dtls._recv_next)
    assert "packetsReceived=self.__rx_packets" in inspect.getsource(dtls._get_stats)


def test_consent_seam() -> None:
    # aiortc_glue.consent replaces this coroutine; connect() starts it by its name, and
    # close() cancels it unless it was cleared first.
    assert aioice.__version__ == "0.13.0", "re-check appliance/media/aiortc_glue/consent.py"
    connect = inspect.getsource(aioice.ice.Connection.connect)
    assert "self._query_consent_task = asyncio.create_task(self.query_consent())" in connect
    assert "self._query_consent_task.cancel()" in inspect.getsource(aioice.ice.Connection.close)
    assert list(inspect.signature(aioice.ice.Connection.build_request).parameters) == [
        "self", "pair", "nominate"]
    assert "retransmissions" in inspect.signature(aioice.stun.Transaction).parameters


def test_rtp_seams() -> None:
    # aiortc_glue.rtp.sender_ssrcs: a sender's media and RTX SSRCs, chosen at construction.
    init = inspect.getsource(RTCRtpSender.__init__)
    assert "self._ssrc = random32()" in init and "self._rtx_ssrc = random32()" in init
    # aiortc_glue.rtp.rtp_payload: the receiver depacketizes before its jitter buffer.
    handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "packet._data = depayload(codec, packet.payload)" in handle
    # seams._depayload_wanted replaces it by that module-level name, before the jitter
    # buffer; forwarding.tap_receiver marks a packet left raw (`_clinicbox_raw`).
    assert callable(aiortc.rtcrtpreceiver.depayload)
    assert handle.index("depayload(codec") < handle.index("self.__jitter_buffer.add(packet)")
    assert not hasattr(aiortc.rtp.RtpPacket, "__slots__")
    # aiortc_glue.transport.nominated_pair: the ICE transport's aioice connection.
    ice = inspect.getsource(aiortc.rtcicetransport.RTCIceTransport)
    assert "self._connection = gatherer._connection" in ice
def test_packet_forwarding_seams() -> None:
    """appliance/media/aiortc_glue/forwarding.py: what the packet path reaches into."""
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    incoming = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in incoming
    routed = inspect.getsource(RTCDtlsTransport._handle_rtp_data)
    assert "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in routed
    assert "self.__rtx_ssrc" in inspect.getsource(RTCRtpReceiver)
    assert "self.__jitter_buffer = JitterBuffer(" in inspect.getsource(RTCRtpReceiver)
    sender = inspect.getsource(RTCRtpSender)
    for private in ("self.__ntp_timestamp", "self.__rtp_timestamp", "self.__octet_count",
                    "self.__packet_count", "self._ssrc = random32()"):
        assert private in sender, private
    # The sender reads its negotiated parameters in `send`, and NACKs in _handle_rtcp_packet.
    assert "parameters.codecs[0]" in inspect.getsource(RTCRtpSender.send)
    assert "await self._retransmit(seq)" in inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "await self.transport._send_rtp(packet_bytes)" in inspect.getsource(
        RTCRtpSender._run_rtp)
    # SenderLink.send_now: what `_send_rtp` and the ICE layers below it do, done at once.
    send_rtp = inspect.getsource(RTCDtlsTransport._send_rtp)
    for step in ("if self._state != State.CONNECTED:", "data = self._tx_srtp.protect(data)",
                 "await self.transport._send(data)", "self.__tx_bytes += len(data)",
                 "self.__tx_packets += 1"):
        assert step in send_rtp, step
    # (name-mangled: _RTCDtlsTransport__tx_bytes, _RTCDtlsTransport__tx_packets)
    assert "return self._transport" in inspect.getsource(RTCDtlsTransport)
    assert "self._send = self._connection.send" in inspect.getsource(
        aiortc.rtcicetransport.RTCIceTransport)
    assert "await self.sendto(data, 1)" in inspect.getsource(aioice.ice.Connection.send)
    sendto = inspect.getsource(aioice.ice.Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in sendto
    assert "await active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    assert "self.transport.sendto(data, addr)" in inspect.getsource(
        aioice.ice.StunProtocol.send_data)

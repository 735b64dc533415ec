"""Every place the packet forwarder reaches into aiortc 1.16's private parts, in one module.

- Incoming: `RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms)` gets each packet just
  after SRTP decryption; we keep those bytes so the receiver's `_handle_rtp_packet` tap can
  forward them unparsed, before aiortc's own handling (statistics, NACKs and REMB to the
  publisher, the jitter buffer that the low tier and mixer still read frames from).
- `aiortc.rtcrtpreceiver.depayload` (the seam in `seams`): a packet whose frames nobody
  wants keeps its payload undepacketized (`UNWANTED`; `_clinicbox_raw` on the packet, which
  `rtp.depayloaded` mends should frames be wanted by the time it reaches the jitter buffer).
- `RTCRtpReceiver.__rtx_ssrc` (RTX SSRC -> media SSRC), to unwrap the publisher's
  retransmissions before forwarding them; `RTCRtpReceiver.__jitter_buffer`, told to assemble
  no frames while nothing reads them.
- Outgoing: `RTCRtpSender._ssrc`, the negotiated parameters (captured by wrapping the public
  `send`), `transport._send_rtp` (SRTP and socket, the pacer's hook too), the sender's RTCP
  sender-report counters (`__packet_count`, `__octet_count`, `__rtp_timestamp`,
  `__ntp_timestamp`), and `_handle_rtcp_packet` to take NACKs for the slot's packet cache.
`tests/media/test_aiortc_seams.py` fails loudly when an upgrade moves these.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket, RtpPacket

from appliance.media.forwarding.rewrite import ExtensionTemplate
from appliance.media.jitter import BoundedJitterBuffer

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
NTP_EPOCH_OFFSET = 2_208_988_800  # NTP counts from 1900

# (decrypted bytes, the packet as aiortc's transport parsed it: SSRC, sequence number,
# header extensions such as the audio level, read without parsing again)
PacketSink = Callable[[bytes, RtpPacket], Awaitable[None]]


class _LastDatagram:
    """The decrypted bytes of the packet a transport is handing to its receivers."""

    data: bytes | None = None


class _UnwantedPayload:
    """The payload of the packet a receiver is handling whose frames nobody wants (its
    jitter buffer drops it: the video leaves as forwarded packets), so aiortc's VP8
    depacketizing of it (~2 us a packet) is skipped by the `depayload` seam
    (`seams.install_forwarding`). Matched by identity: a packet another receiver handles
    meanwhile (aiortc's handler awaits RTCP sends before it depacketizes) is depacketized as
    before, and a packet's keyframe is read from its raw bytes (`forwarding.rewrite`)."""

    payload: bytes | None = None


UNWANTED = _UnwantedPayload()


def tap_receiver(receiver: RTCRtpReceiver, sink: PacketSink) -> None:
    """Hand each RTP packet of `receiver` (decrypted bytes, aiortc's parse) to `sink` first;
    while its jitter buffer wants no frames, mark the packet's payload not to depacketize."""
    buffer = jitter_buffer(receiver)
    # Video only: aiortc's Opus depacketizing is no work at all.
    video = buffer if isinstance(buffer, BoundedJitterBuffer) else None
    transport: Any = receiver.transport
    last: _LastDatagram | None = getattr(transport, "_clinicbox_last_datagram", None)
    if last is None:
        last = _LastDatagram()
        original_data = transport._handle_rtp_data

        async def handle_data(data: bytes, arrival_time_ms: int) -> None:
            last.data = data
            try:
                await original_data(data, arrival_time_ms)
            finally:
                last.data = None

        transport._handle_rtp_data = handle_data
        transport._clinicbox_last_datagram = last
    original_packet = receiver._handle_rtp_packet

    async def handle_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        data = last.data
        if data is not None:
            await sink(data, packet)
        wanted = video.frames_wanted if video is not None else None
        # A 1-byte payload may be a cached bytes object another packet shares: left alone.
        if wanted is not None and len(packet.payload) > 1 and not wanted():
            UNWANTED.payload = packet.payload
            packet._clinicbox_raw = True  # type: ignore[attr-defined]
        try:
            await original_packet(packet, arrival_time_ms)
        finally:
            UNWANTED.payload = None

    receiver._handle_rtp_packet = handle_packet  # type: ignore[method-assign]


def jitter_buffer(receiver: RTCRtpReceiver) -> object:
    """The receiver's jitter buffer (ours, `BoundedJitterBuffer`, where the seam is in)."""
    return getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)


def rtx_ssrcs(receiver: RTCRtpReceiver) -> dict[int, int]:
    """RTX SSRC -> media SSRC, as the receiver learnt them from the offer."""
    return dict(getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {}))


class SenderLink:
    """Where a slot's rewritten packets leave: the sender's SSRC, SRTP and socket."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.sender = sender
        self.payload_type: int | None = None  # known once negotiated
        self._mid_element: tuple[int, bytes] | None = None
        self._abs_send_time_id = 0
        self._extensions: ExtensionTemplate | None = None
        self.taking_nacks = False  # NACKs go to the slot's caches (else to aiortc's history)
        original_send = sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            self.configure(parameters)
            await original_send(parameters)

        sender.send = send  # type: ignore[method-assign]

    def configure(self, parameters: RTCRtpSendParameters) -> None:
        self._extensions = None
        if parameters.codecs:
            self.payload_type = parameters.codecs[0].payloadType
        for ext in parameters.headerExtensions:
            if ext.uri == MID_URI and parameters.muxId:
                self._mid_element = (ext.id, parameters.muxId.encode())
            elif ext.uri == ABS_SEND_TIME_URI:
                self._abs_send_time_id = ext.id

    @property
    def ssrc(self) -> int:
        return int(self.sender._ssrc)

    @property
    def ready(self) -> bool:
        # The enum, not `transport.state` (a string made from it on every read): per packet.
        return self.payload_type is not None and self.sender.transport._state is DtlsState.CONNECTED

    def extensions(self, wall: float) -> bytes:
        """The subscriber's header extensions for a packet sent at `wall` (time.time())."""
        if self._extensions is None:
            self._extensions = ExtensionTemplate(self._mid_element, self._abs_send_time_id)
        return self._extensions.at(wall)

    async def send(self, packet: bytes, timestamp: int, payload_bytes: int) -> None:
        """Encrypt and send; count it where the sender's RTCP sender reports read."""
        await self.sender.transport._send_rtp(packet)
        sender: Any = self.sender
        sender._RTCRtpSender__ntp_timestamp = _ntp_now()
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count += payload_bytes
        sender._RTCRtpSender__packet_count += 1

    def send_now(self, packet: bytes, timestamp: int, payload_bytes: int) -> bool:
        """`send` without awaiting: SRTP and the socket's sendto are synchronous under
        aiortc's and aioice's five awaited layers (DTLS `_send_rtp`, ICE `_send`,
        `Connection.send`/`sendto`, `send_data`), which cost more than the encryption. False
        when the packet must take that chain (`send`): a pacer holds the transport's send
        (a remote link), or DTLS or ICE is not up (the chain raises ConnectionError)."""
        dtls: Any = self.sender.transport
        if "_send_rtp" in vars(dtls) or dtls._state is not DtlsState.CONNECTED:
            return False
        pair = dtls._transport._connection._nominated.get(1)
        if pair is None:
            return False
        data = dtls._tx_srtp.protect(packet)
        pair.protocol.transport.sendto(data, pair.remote_addr)
        dtls._RTCDtlsTransport__tx_bytes += len(data)
        dtls._RTCDtlsTransport__tx_packets += 1
        sender: Any = self.sender
        sender._RTCRtpSender__ntp_timestamp = _ntp_now()
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count += payload_bytes
        sender._RTCRtpSender__packet_count += 1
        return True

    async def resend(self, packet: bytes) -> None:
        """A retransmission: same SSRC and sequence number (no RTX), not counted again."""
        await self.sender.transport._send_rtp(packet)

    def take_nacks(self, on_nack: Callable[[list[int]], Awaitable[None]]) -> None:
        """NACKs for this sender go to `on_nack`, not to aiortc's frame history."""
        original = self.sender._handle_rtcp_packet
        self.taking_nacks = True

        async def handle(packet: Any) -> None:
            if (
                self.taking_nacks
                and isinstance(packet, RtcpRtpfbPacket)
                and packet.fmt == RTCP_RTPFB_NACK
            ):
                await on_nack(list(packet.lost))
                return
            await original(packet)

        self.sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def _ntp_now() -> int:
    wall = time.time() + NTP_EPOCH_OFFSET
    return (int(wall) << 32) | int((wall % 1) * (1 << 32))

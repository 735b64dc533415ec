"""Stock aiortc relaying: the baseline ClinicBox's SFU is measured against.

What an aiortc application does out of the box: every publisher's track is decoded once,
`aiortc.contrib.media.MediaRelay` hands the decoded frames to each subscriber, and each
subscriber's `RTCRtpSender` encodes them again with its own encoder (CPU grows with
participants squared; the VP8 encoder never goes below 250 kbps whatever the link).

It accepts the same offers as the SFU (own tracks send-only, receive-only slots for the
others), so the same synthetic participants and browser-like clients can call either. Slots
are filled in join order as publishers appear and never switch; nothing here adapts.
It is a benchmark baseline, not part of the box.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription
from av.frame import Frame
from av.packet import Packet


class StockSlot(MediaStreamTrack):
    """A subscriber's receive slot: waits for a publisher, then yields its decoded frames."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.source: MediaStreamTrack | None = None
        self._attached = asyncio.Event()

    def attach(self, source: MediaStreamTrack) -> None:
        self.source = source
        self._attached.set()

    async def recv(self) -> Frame | Packet:
        await self._attached.wait()
        assert self.source is not None
        return await self.source.recv()


@dataclass
class StockPeer:
    """One participant of the stock relay: its connection, slots and published tracks."""

    id: str
    pc: RTCPeerConnection
    slots: list[StockSlot] = field(default_factory=list)
    published: dict[str, MediaStreamTrack] = field(default_factory=dict)


class StockRelay:
    """One room relayed the stock aiortc way: decode once, re-encode per subscriber."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.peers: dict[str, StockPeer] = {}

    async def join(self, peer_id: str, sdp: str) -> str:
        """Answer a participant's offer; fills its slots and others' as tracks appear."""
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        peer = self.peers[peer_id] = StockPeer(peer_id, pc)
        for media in SessionDescription.parse(sdp).media:
            if media.kind not in ("audio", "video"):
                continue
            if media.direction in ("sendonly", "sendrecv"):
                transceiver = pc.addTransceiver(media.kind, direction="recvonly")
            else:
                slot = StockSlot(media.kind)
                peer.slots.append(slot)
                transceiver = pc.addTransceiver(slot, direction="sendonly")
            # The same codecs the SFU negotiates, so both are measured on Opus and VP8.
            wanted = ("audio/opus",) if media.kind == "audio" else ("video/vp8", "video/rtx")
            transceiver.setCodecPreferences([
                c for c in RTCRtpSender.getCapabilities(media.kind).codecs
                if c.mimeType.lower() in wanted
            ])

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            peer.published[track.kind] = track
            for other in self.peers.values():
                if other is not peer:
                    self._fill(other, track)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        for other in list(self.peers.values()):
            for track in other.published.values():
                if other is not peer:
                    self._fill(peer, track)
        return pc.localDescription.sdp

    def _fill(self, subscriber: StockPeer, track: MediaStreamTrack) -> None:
        """Give the subscriber's first free slot of the track's kind a relayed copy of it."""
        for slot in subscriber.slots:
            if slot.kind == track.kind and slot.source is None:
                slot.attach(self.relay.subscribe(track))
                return

    async def close(self) -> None:
        """Close every connection."""
        for peer in self.peers.values():
            await peer.pc.close()
        self.peers.clear()

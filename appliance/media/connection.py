"""A seat's peer connection: made for its offer, hooked to its room, answered.

Each audio or video m-section of the offer gets one transceiver before the offer is applied:
a section the participant sends on is received by the box (its track becomes a `Publication`),
a section it receives on is a receive slot (a `SlotTrack` the box sends into), and any other is
inactive. Both legs negotiate the same codecs (Opus; VP8 with RTX), so that forwarded frames
and packets need no transcoding. ICE servers are empty for LAN seats and name the centre's
TURN relay for remote ones (`appliance.media.turn`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription

from appliance.media.aiortc_glue.forwarding import SenderLink, jitter_buffer
from appliance.media.aiortc_glue.rtp import route_keyframes
from appliance.media.forwarding.audio_feed import AudioFeed
from appliance.media.forwarding.forwarder import SlotOutput, VideoFeed
from appliance.media.jitter import BoundedJitterBuffer, ForwardingAudioBuffer
from appliance.media.participant import Participant
from appliance.media.publication import Publication
from appliance.media.sdp import (
    BadOffer,
    add_offered_candidates,
    keep_ice_open_for_mdns,
    shape_answer,
)
from appliance.media.slot import SlotTrack


def codecs(kind: str) -> list[RTCRtpCodecCapability]:
    """The codecs both legs negotiate for `kind`: VP8 (and its RTX) for video, Opus for audio."""
    wanted = ("video/vp8", "video/rtx") if kind == "video" else ("audio/opus",)
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() in wanted]


def new_peer_connection(ice_servers: Sequence[RTCIceServer]) -> RTCPeerConnection:
    """A peer connection for one seat, bundling all its media on one transport."""
    # MAX_BUNDLE: the transceivers made here before the offer is applied must all share the
    # first one's transport (with BALANCED, aiortc leaves later video ones on an orphan).
    return RTCPeerConnection(
        RTCConfiguration(iceServers=list(ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


@dataclass(frozen=True)
class ReceiveSlot:
    """A receive slot of the offer: the transceiver the box sends on and the track it sends."""

    transceiver: RTCRtpTransceiver
    track: SlotTrack


def add_transceivers(
    pc: RTCPeerConnection,
    offer: SessionDescription,
    forward_packets: bool,
    forward_voices: bool = True,
) -> list[ReceiveSlot]:
    """One transceiver per audio or video m-section of `offer`, in its order; the receive
    slots among them. `forward_packets`: video slots send the publishers' own RTP packets;
    `forward_voices`: audio slots too."""
    slots: list[ReceiveSlot] = []
    for media in offer.media:
        if media.kind not in ("audio", "video"):
            continue
        if media.direction in ("sendonly", "sendrecv"):
            transceiver = pc.addTransceiver(media.kind, direction="recvonly")
        elif media.direction == "recvonly":
            track = SlotTrack(media.kind, mid="")
            transceiver = pc.addTransceiver(track, direction="sendonly")
            slots.append(ReceiveSlot(transceiver, track))
            if forward_voices if media.kind == "audio" else forward_packets:
                # Before negotiation: the link learns the payload type and extension ids
                # as the sender starts, and takes NACKs before adaptation's tap rations them.
                track.output = SlotOutput(SenderLink(transceiver.sender), track.sent, media.kind)
        else:
            transceiver = pc.addTransceiver(media.kind, direction="inactive")
        transceiver.setCodecPreferences(codecs(media.kind))
    return slots


@dataclass(frozen=True)
class ConnectionHooks:
    """What the room does when its seat's peer connection reports something."""

    # A remote track arrived: the participant publishes it (with the receiver it came on).
    on_track: Callable[[MediaStreamTrack, RTCRtpReceiver], None]
    # The participant opened its data channel (in-call events).
    on_channel: Callable[[RTCDataChannel], None]
    # The connection failed or closed.
    on_dropped: Callable[[], None]
    # The connection is up (ICE and DTLS).
    on_connected: Callable[[], None]


def hook(pc: RTCPeerConnection, hooks: ConnectionHooks) -> None:
    """Send `pc`'s track, data channel and connection state events to `hooks`."""

    @pc.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        hooks.on_track(track, receiver)

    @pc.on("datachannel")
    def _on_channel(channel: RTCDataChannel) -> None:
        hooks.on_channel(channel)

    @pc.on("connectionstatechange")
    async def _on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            hooks.on_dropped()
        elif pc.connectionState == "connected":
            hooks.on_connected()


async def negotiate(pc: RTCPeerConnection, sdp: str, thin: bool) -> RTCSessionDescription:
    """Apply the offer `sdp` and return the box's answer (shaped by `shape_answer`; `thin`:
    it asks the client for thin-uplink audio). An offer that cannot be answered closes `pc`
    and raises BadOffer."""
    try:
        # Before the offer is applied: aiortc takes an end-of-candidates in its last
        # m-section as the end, after which no candidate is added.
        await add_offered_candidates(pc, sdp)
        await pc.setRemoteDescription(
            RTCSessionDescription(sdp=keep_ice_open_for_mdns(sdp), type="offer")
        )
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
    except Exception as exc:
        await pc.close()
        raise BadOffer(
            f"the offer cannot be answered: it must offer Opus audio and VP8 video ({exc})"
        ) from None
    return RTCSessionDescription(
        sdp=shape_answer(pc.localDescription.sdp, thin=thin), type="answer"
    )


def attach_slots(
    me: Participant,
    slots: Sequence[ReceiveSlot],
    tap: Callable[[Participant, RTCRtpSender], None],
) -> None:
    """Give `me` its negotiated receive slots; each slot's sender routes keyframe requests to
    the publisher it shows and hands its RTCP to `tap` (adaptation) first."""
    for slot in slots:
        track, sender = slot.track, slot.transceiver.sender
        track.mid = slot.transceiver.mid or ""
        (me.audio_slots if track.kind == "audio" else me.video_slots).append(track)
        # In pack mode the sender ignores PLI/FIR; route it to the publisher instead.
        route_keyframes(sender, track.request_keyframe)
        track.sender = sender
        tap(me, sender)


def new_publication(
    participant_id: str,
    track: MediaStreamTrack,
    receiver: RTCRtpReceiver,
    forward_packets: bool,
    forward_voices: bool = True,
) -> Publication:
    """What the box makes of a participant's remote track: a `Publication` whose video and
    voice, in a forwarding room, are also feeds of its RTP packets; its jitter buffer then
    assembles frames only while something decodes them (low tier, mixer)."""
    publication = Publication(participant_id, track, receiver)
    buffer = jitter_buffer(receiver)
    if track.kind == "video" and forward_packets:
        publication.feed = VideoFeed(receiver, publication.request_keyframe)
        if isinstance(buffer, BoundedJitterBuffer):
            buffer.frames_wanted = publication.wants_frames
    elif track.kind == "audio" and isinstance(buffer, ForwardingAudioBuffer):
        publication.take_directly_from(buffer)  # no decoder-thread hop for voices
        if forward_voices:
            publication.feed = AudioFeed(receiver, publication.heard)
            buffer.frames_wanted = publication.wants_frames
    return publication

"""SDP for weak links: what the box asks publishers to send, and offer checks.

The answer asks browsers for Opus with in-band FEC at a speech bitrate and caps their video
near 500 kbps (`b=AS`/`b=TIAS`); 640x360 at 15 fps is asked for by the client's capture
constraints, since SDP cannot set resolution for VP8.
"""

from __future__ import annotations

import re

from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription, candidate_from_sdp

OPUS_FMTP = {"useinbandfec": "1", "maxaveragebitrate": "24000", "stereo": "0", "usedtx": "1"}
VIDEO_MAX_KBPS = 500
MAX_SDP_BYTES = 64 * 1024


class BadOffer(ValueError):
    """The offer cannot be used; the message says why."""


def parse_offer(sdp: object, kind: object) -> SessionDescription:
    if kind != "offer":
        raise BadOffer("expected an SDP offer (type must be 'offer')")
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadOffer("the offer has no SDP text")
    if len(sdp) > MAX_SDP_BYTES:
        raise BadOffer("the SDP offer is too large")
    if not sdp.lstrip().startswith("v=0"):
        raise BadOffer("the SDP offer is malformed (it must start with v=0)")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises many kinds on bad input
        raise BadOffer(f"the SDP offer is malformed ({type(exc).__name__})") from None
    if not any(m.kind in ("audio", "video") for m in parsed.media):
        raise BadOffer("the SDP offer has no audio or video")
    return parsed


def _opus_payload_types(sdp: str) -> list[str]:
    return re.findall(r"^a=rtpmap:(\d+) opus/48000", sdp, flags=re.M | re.I)


def shape_answer(sdp: str) -> str:
    """Add Opus FEC/bitrate fmtp and a video bandwidth cap to an aiortc answer."""
    lines = sdp.split("\r\n")
    opus = set(_opus_payload_types(sdp))
    out: list[str] = []
    kind = None
    for line in lines:
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
        match = re.match(r"a=fmtp:(\d+) (.*)", line)
        if match and match.group(1) in opus:
            params = dict(p.split("=", 1) for p in match.group(2).split(";") if "=" in p)
            params.update(OPUS_FMTP)
            line = f"a=fmtp:{match.group(1)} " + ";".join(f"{k}={v}" for k, v in params.items())
        out.append(line)
        if line.startswith("c=") and kind == "video":
            out.append(f"b=AS:{VIDEO_MAX_KBPS}")
            out.append(f"b=TIAS:{VIDEO_MAX_KBPS * 1000}")
    text = "\r\n".join(out)
    for pt in opus:  # Opus lines aiortc wrote without any fmtp
        if f"a=fmtp:{pt} " not in text:
            params = ";".join(f"{k}={v}" for k, v in OPUS_FMTP.items())
            text = text.replace(
                f"a=rtpmap:{pt} opus/48000/2", f"a=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} {params}"
            )
    return text


async def add_offered_candidates(pc: RTCPeerConnection, sdp: str) -> int:
    """Give the peer connection's shared transport every candidate the offer carries.

    With one bundled transport aiortc keeps the candidates of the offer's LAST m-section
    only; a browser puts them in the first (the others are bundle-only), so the box would
    know none of them. On a LAN that goes unnoticed (the browser's checks reach the box and
    it learns peer-reflexive candidates), but through TURN the box must check first: its
    relay forwards nothing from a peer it has not sent to. Returns how many were offered.
    """
    candidates = [
        candidate_from_sdp(line.split(":", 1)[1])
        for line in sdp.splitlines()
        if line.startswith("a=candidate:")
    ]
    transports = {t.sender.transport.transport for t in pc.getTransceivers() if t.sender.transport}
    for transport in transports:
        for candidate in candidates:
            await transport.addRemoteCandidate(candidate)  # aioice skips ones it has
    return len(candidates)

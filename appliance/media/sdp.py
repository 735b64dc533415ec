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
# For a client on a thin link: 60 ms packets cut the headers from ~20 kbps (50 packets/s with
# RTP/SRTP/UDP/IP) to ~7, and 12 kbps of Opus (still intelligible speech, with FEC) leaves
# room in a 20 kbps GPRS uplink. Longer packets wait longer to fill: that costs 40 ms one way,
# paid only by whoever sends on such a link.
THIN_OPUS_FMTP = {**OPUS_FMTP, "maxaveragebitrate": "12000", "ptime": "60", "maxptime": "60"}
THIN_PTIME_MS = 60
VIDEO_MAX_KBPS = 500
MAX_SDP_BYTES = 64 * 1024
# What the call page offers (web/static/call.js): one send-only track per kind, a receive
# slot per other participant's voice (a room holds 12) and 4 video slots (last-N).
MAX_SENDING = {"audio": 1, "video": 1}
MAX_RECEIVING = {"audio": 11, "video": 4}
MAX_MEDIA_SECTIONS = 24


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
    _check_counts(parsed)
    return parsed


def _check_counts(parsed: SessionDescription) -> None:
    """Refuse offers with more m-lines than a call page makes (each costs the box a slot)."""
    if len(parsed.media) > MAX_MEDIA_SECTIONS:
        raise BadOffer(
            f"the SDP offer has {len(parsed.media)} m-lines; at most "
            f"{MAX_MEDIA_SECTIONS} are accepted"
        )
    for kind in ("audio", "video"):
        sending = sum(
            1 for m in parsed.media if m.kind == kind and m.direction in ("sendonly", "sendrecv")
        )
        receiving = sum(1 for m in parsed.media if m.kind == kind and m.direction == "recvonly")
        if sending > MAX_SENDING[kind]:
            raise BadOffer(
                f"the SDP offer sends {sending} {kind} tracks; at most "
                f"{MAX_SENDING[kind]} is accepted"
            )
        if receiving > MAX_RECEIVING[kind]:
            raise BadOffer(
                f"the SDP offer asks to receive {receiving} {kind} tracks; at most "
                f"{MAX_RECEIVING[kind]} are accepted"
            )


def keep_ice_open_for_mdns(sdp: str) -> str:
    """The offer without `a=end-of-candidates` when its host candidates are mDNS names.

    Browsers may hide host addresses behind `<uuid>.local` names. When the box cannot resolve
    them (no mDNS across the segment, or a name that is never answered), aioice, told the
    candidates are complete, prunes the component and fails at once, before the browser's
    connectivity checks arrive. Without the marker the box waits for those checks and pairs
    with the address they come from (a peer-reflexive candidate): the address the browser
    really uses, which is what decides LAN or remote.
    """
    if not re.search(r"^a=candidate:\S+ \d+ \S+ \d+ \S+\.local ", sdp, flags=re.M | re.I):
        return sdp
    return re.sub(r"^a=end-of-candidates\r?\n", "", sdp, flags=re.M)


def _opus_payload_types(sdp: str) -> list[str]:
    return re.findall(r"^a=rtpmap:(\d+) opus/48000", sdp, flags=re.M | re.I)


def shape_answer(sdp: str, thin: bool = False) -> str:
    """Add Opus FEC/bitrate fmtp and a video bandwidth cap to an aiortc answer; with `thin`,
    ask for 12 kbps Opus in 60 ms packets (fmtp and `a=ptime`)."""
    fmtp = THIN_OPUS_FMTP if thin else OPUS_FMTP
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
            params.update(fmtp)
            line = f"a=fmtp:{match.group(1)} " + ";".join(f"{k}={v}" for k, v in params.items())
        out.append(line)
        if thin and line.startswith("c=") and kind == "audio":
            out.append(f"a=ptime:{THIN_PTIME_MS}")
            out.append(f"a=maxptime:{THIN_PTIME_MS}")
        if line.startswith("c=") and kind == "video":
            out.append(f"b=AS:{VIDEO_MAX_KBPS}")
            out.append(f"b=TIAS:{VIDEO_MAX_KBPS * 1000}")
    text = "\r\n".join(out)
    for pt in opus:  # Opus lines aiortc wrote without any fmtp
        if f"a=fmtp:{pt} " not in text:
            wanted = ";".join(f"{k}={v}" for k, v in fmtp.items())
            text = text.replace(
                f"a=rtpmap:{pt} opus/48000/2", f"a=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} {wanted}"
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

"""A client that found its link thin asks so in its offer; the box's answer then asks it for
12 kbps Opus in 60 ms packets (header overhead ~7 kbps instead of ~20), the others keep 24
kbps in 20 ms packets."""

from __future__ import annotations

import asyncio
import re

from tests.media.conftest import Sfu
from tests.media.peer import Peer


def _opus_fmtp(sdp: str) -> dict[str, str]:
    pt = re.search(r"^a=rtpmap:(\d+) opus/48000", sdp, flags=re.M)
    assert pt is not None
    line = re.search(rf"^a=fmtp:{pt.group(1)} (.*)$", sdp, flags=re.M)
    assert line is not None
    return dict(p.split("=", 1) for p in line.group(1).strip().split(";"))


def test_a_thin_client_is_answered_for_a_thin_uplink(sfu: Sfu) -> None:
    async def scenario() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        answers = []
        peers = [Peer("thin", audio_slots=2, video_slots=1), Peer("lan")]
        try:
            for peer, thin in zip(peers, (True, False), strict=True):
                body = {**await peer.offer(), "token": sfu.token(sfu.admit(peer.name))}
                if thin:
                    body["thin"] = True
                status, answer = await loop.run_in_executor(None, sfu.post_offer, body)
                assert status == 200, answer
                await peer.accept(answer)  # aiortc takes it as browsers would
                answers.append(answer["sdp"])
        finally:
            for peer in peers:
                await peer.close()
        return answers[0], answers[1]

    thin, lan = asyncio.run(scenario())
    fmtp = _opus_fmtp(thin)
    assert fmtp["maxaveragebitrate"] == "12000" and fmtp["ptime"] == "60"
    assert fmtp["useinbandfec"] == "1"
    assert "a=ptime:60" in thin and "a=maxptime:60" in thin
    fmtp = _opus_fmtp(lan)
    assert fmtp["maxaveragebitrate"] == "24000" and "ptime" not in fmtp
    assert "a=ptime:" not in lan

"""The box knows a browser's ICE candidates although they sit in the offer's first m-section
only (max-bundle: the others are bundle-only), as Chromium sends them.

aiortc keeps the candidates of the LAST m-section for a bundled transport; without
`add_offered_candidates` the box knew none and could only learn peer-reflexive ones from the
browser's checks: enough on a LAN, never through TURN, where the box's relay forwards nothing
from a peer the box has not sent to (a Chromium patient behind NAT never connected).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.media.conftest import Sfu
from tests.media.peer import Peer


def _first_section_candidates_only(sdp: str) -> tuple[str, int]:
    sections = sdp.split("\r\nm=")
    kept = [sections[0], sections[1]]
    kept += [
        "\r\n".join(
            line
            for line in s.split("\r\n")
            if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        for s in sections[2:]
    ]
    first = sum(1 for line in sections[1].split("\r\n") if line.startswith("a=candidate:"))
    return "\r\nm=".join(kept), first


def test_candidates_of_the_first_bundled_section_reach_the_box(sfu: Sfu) -> None:
    async def scenario() -> None:
        peer = Peer("ana")
        offer = await peer.offer()
        sdp, offered = _first_section_candidates_only(offer["sdp"])
        assert offered >= 1 and sdp.count("a=candidate:") == offered
        participant = sfu.admit("Ana")
        loop = asyncio.get_running_loop()
        status, answer = await loop.run_in_executor(
            None, sfu.post_offer, {"sdp": sdp, "type": "offer", "token": sfu.token(participant)}
        )
        assert status == 200, answer

        async def remote_candidates() -> list[Any]:
            pc = sfu.box.rooms.rooms[sfu.session_id].participants[participant].pc
            return pc.getTransceivers()[0].sender.transport.transport.getRemoteCandidates()

        known = sfu.box.media.call(remote_candidates(), timeout=5)
        assert len(known) == offered, known
        await peer.accept(answer)
        await peer.close()

    asyncio.run(scenario())

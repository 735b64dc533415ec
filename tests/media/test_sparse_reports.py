"""A remote subscriber that reports as Chromium does on an audio-only downlink (a receiver
report every ~4.5 s, its own media flowing all the while) is not a cut link: no
"reconnecting" for the others, no "Connection interrupted" for it. A subscriber from which
nothing at all arrives is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket

from appliance.media.adaptation import LinkState
from appliance.media.adaptive import RoomAdaptation
from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for

REPORT_EVERY_S = 4.5


def report_like_chromium(monkeypatch: pytest.MonkeyPatch, who: list[str]) -> None:
    """The box sees receiver reports from the participants in `who` only once every
    REPORT_EVERY_S (as from Chromium receiving audio only); all their other RTCP and media
    still arrive."""
    original = RoomAdaptation._on_rtcp
    last: dict[str, float] = {}

    def on_rtcp(self: RoomAdaptation, participant: Any, sender: Any, packet: Any) -> None:
        if participant.id in who and isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            now = time.monotonic()
            if now - last.setdefault(participant.id, now) < REPORT_EVERY_S:
                return
            last[participant.id] = now
        original(self, participant, sender, packet)

    monkeypatch.setattr(RoomAdaptation, "_on_rtcp", on_rtcp)


def cut(peer: Peer) -> Callable[[], None]:
    """Nothing leaves this peer any more (every datagram of its ICE sockets is dropped) until
    the returned function is called."""
    ice = peer.pc.getTransceivers()[0].sender.transport.transport
    transports = [protocol.transport for protocol in ice._connection._protocols]
    for transport in transports:
        transport.sendto = lambda *args, **kwargs: None

    def restore() -> None:
        for transport in transports:
            del transport.sendto  # the class's own method again

    return restore


def reconnecting(peer: Peer, who: str) -> list[dict[str, Any]]:
    return [e for e in peer.events if e.get("participant") == who and e.get("reconnecting") is True]


def interrupted(peer: Peer) -> list[dict[str, Any]]:
    return [e for e in peer.events if e.get("type") == "quality" and e.get("to") == "interrupted"]


def test_sparse_reports_are_no_cut_but_silence_is(
    sfu: Sfu, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both count as remote patients (loopback would be the clinic's LAN).
    monkeypatch.setattr("appliance.media.adaptive.is_lan", lambda address, networks: False)

    async def scenario() -> None:
        a, b = Peer("a"), Peer("b")
        ida, idb = sfu.admit("A"), sfu.admit("B")
        report_like_chromium(monkeypatch, [idb])
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            room = sfu.box.rooms.rooms[sfu.session_id]
            assert await wait_for(
                lambda: idb in room.participants and room.participants[idb].link is not None, 10
            )
            assert room.participants[idb].remote
            states = set()
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                link = room.participants[idb].link
                if link is not None:
                    states.add(link.state)
                await asyncio.sleep(0.25)
            assert LinkState.SILENT not in states, states
            assert reconnecting(a, idb) == [], a.events
            assert interrupted(b) == [], b.events

            # Now nothing at all leaves B (its link cut, ICE included): the others are told.
            restore = cut(b)
            try:
                assert await wait_for(lambda: reconnecting(a, idb) != [], 10), a.events
            finally:
                restore()
        finally:
            for peer in (a, b):
                await peer.close()

    asyncio.run(scenario())

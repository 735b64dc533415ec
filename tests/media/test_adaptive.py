"""The room's adaptation on real aiortc peers over loopback: RTCP reaches the estimators,
every subscriber gets a plan, and a LAN subscriber keeps the publishers' own streams."""

from __future__ import annotations

import asyncio

import pytest

from appliance.media.adaptation import AudioMode, LinkState, Tier
from appliance.media.adaptive import _Rate
from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


def test_receiver_reports_reach_the_estimator_and_lan_keeps_full_quality(sfu: Sfu) -> None:
    async def scenario() -> None:
        a, b = Peer("a"), Peer("b")
        ida, idb = sfu.admit("A"), sfu.admit("B")
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            room = sfu.box.rooms.rooms[sfu.session_id]

            def reported() -> bool:
                people = room.participants.values()
                return all(p.link is not None and p.link.rtt_s is not None for p in people)

            assert await wait_for(reported, 15), [p.link for p in room.participants.values()]
            for p in room.participants.values():
                assert not p.remote  # loopback is the clinic's own network
                assert p.plan is not None and p.plan.audio is AudioMode.FORWARDED
                assert set(p.plan.tiers.values()) == {Tier.FORWARD}
                assert p.link is not None and p.link.state is not LinkState.SILENT
                assert p.link.rtt_s is not None and p.link.rtt_s < 0.2
            assert room.adaptation.ticks > 2
            # The plan keeps forwarding: both still receive the other's video.
            mid = a.mid_showing("video", idb)
            assert mid is not None
            seen = a.frames[mid]
            assert await wait_for(lambda: a.frames[mid] > seen + 10, 5)
        finally:
            for peer in (a, b):
                await peer.close()

    asyncio.run(scenario())


def test_a_sent_rate_restarts_from_a_new_counter() -> None:
    # A reconnected subscriber gets a new pacer whose count starts at 0: no negative rate.
    rate = _Rate()
    for t in range(1, 11):
        rate.update(t * 0.5, t * 6250)  # 100 kbps
    before = rate.bps
    assert 90_000 < before <= 100_000
    assert rate.update(5.5, 0) == before  # the new counter: nothing learnt yet
    assert rate.update(6.0, 6250) == pytest.approx(before + 0.3 * (100_000 - before))

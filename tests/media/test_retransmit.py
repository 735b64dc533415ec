"""A remote subscriber's retransmissions: a share of its allowance, none while backing off."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

from appliance.media.adaptation import Estimate, LinkState
from appliance.media.adaptive import AdaptationSettings, RoomAdaptation
from appliance.media.retransmit import DEPTH_S, SHARE, FreshLosses, RetransmitBudget


def test_a_nack_storm_is_answered_only_up_to_the_budget() -> None:
    budget = RetransmitBudget()
    assert budget.allow(0.0, 60, 500, 80_000, congested=False) == 0  # nothing saved yet
    # GPRS, 80 kbps: 10% for up to 0.5 s is 500 bytes, one packet; not 60 (24 KB, 2.4 s).
    granted = budget.allow(1.0, 60, 500, 80_000, congested=False)
    assert granted == int(SHARE * 80_000 / 8 * DEPTH_S // 500) == 1
    assert budget.allow(1.0, 60, 500, 80_000, congested=False) == 0  # spent
    # A fast link resends a few lost packets at once.
    fast = RetransmitBudget()
    fast.allow(0.0, 0, 1270, 2_000_000, congested=False)
    assert fast.allow(1.0, 5, 1270, 2_000_000, congested=False) == 5


def test_nothing_is_resent_while_the_link_backs_off() -> None:
    budget = RetransmitBudget()
    budget.allow(0.0, 0, 500, 1_000_000, congested=False)
    assert budget.allow(2.0, 3, 500, 1_000_000, congested=True) == 0
    assert budget.allow(2.1, 3, 500, 1_000_000, congested=False) == 3  # saved up meanwhile


def test_a_remote_subscribers_nack_reaches_aiortc_trimmed_and_a_lan_ones_whole() -> None:
    class Sender:
        """Stands in for a slot's RTCRtpSender: records the RTCP aiortc would handle."""

        def __init__(self) -> None:
            self.handled: list[object] = []

        async def _handle_rtcp_packet(self, packet: object) -> None:
            self.handled.append(packet)

        async def _send_rtcp(self, packets: list[object]) -> None:
            pass

    def link(state: LinkState) -> Estimate:
        return Estimate(80_000, 80_000, state, 0.0, 0.7)

    async def scenario() -> None:
        adaptation = RoomAdaptation(AdaptationSettings(), list, lambda: None,
                                    lambda event, to: None)
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=2, lost=list(range(60)))
        remote = SimpleNamespace(id="p1", remote=True, link=link(LinkState.STEADY))
        lan = SimpleNamespace(id="nurse", remote=False, link=link(LinkState.STEADY))
        senders = {"p1": Sender(), "nurse": Sender()}
        for who in (remote, lan):
            adaptation.tap(who, senders[who.id])  # type: ignore[arg-type]
        await senders["nurse"]._handle_rtcp_packet(nack)
        assert senders["nurse"].handled == [nack]
        await senders["p1"]._handle_rtcp_packet(nack)  # nothing saved up yet
        await asyncio.sleep(0.6)
        await senders["p1"]._handle_rtcp_packet(nack)
        (resent,) = senders["p1"].handled
        assert 0 < len(resent.lost) < 60 and resent.lost[-1] == 59  # the newest
        remote.link = link(LinkState.BACKING_OFF)
        await asyncio.sleep(0.6)
        await senders["p1"]._handle_rtcp_packet(nack)
        assert len(senders["p1"].handled) == 1

    asyncio.run(scenario())


def test_a_packet_nacked_again_counts_once_until_the_horizon_passes() -> None:
    losses = FreshLosses(horizon_s=2.0)
    assert losses.add(0.0, 7, [1, 2, 3]) == 3
    assert losses.add(0.7, 7, [2, 3, 4]) == 1  # the receiver repeats 2 and 3 each RTT
    assert losses.add(0.8, 8, [2]) == 1  # another stream's packet 2 is another packet
    assert losses.add(2.5, 7, [1, 4]) == 1  # 1 was named 2.5 s ago: asked for anew

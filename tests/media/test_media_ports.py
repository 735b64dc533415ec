"""ICE host sockets of the box bind in `media_ports`, so the firewall opens only that range."""

from __future__ import annotations

import asyncio
import re

import pytest

from appliance.media.ports import PortRange, bind_media_ports, parse_port_range
from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", re.M | re.I)


def test_box_candidates_use_the_media_port_range_and_media_flows(sfu: Sfu) -> None:
    ports = PortRange(41000, 41009)
    bind_media_ports(sfu.box.media.loop, ports)

    async def scenario() -> None:
        # Two participants: two box-side peer connections, each with its own host socket.
        a, b = Peer("a"), Peer("b")
        answers: list[str] = []
        original = sfu.post_offer

        def post_offer(body: dict, role: str = "patient") -> tuple[int, dict]:
            status, reply = original(body, role)
            answers.append(reply.get("sdp", ""))
            return status, reply

        sfu.post_offer = post_offer  # type: ignore[method-assign]
        try:
            await sfu.join(a, sfu.admit("A"))
            await sfu.join(b, sfu.admit("B"))
            assert await wait_for(lambda: a.pc.iceConnectionState == "completed", 15)
            found = [int(port) for sdp in answers for _, port in _CANDIDATE.findall(sdp)]
            assert len(found) >= 2, answers
            assert all(port in ports for port in found), found
            # Media really crosses those sockets: b's voice reaches a, decoded, with signal.
            assert await wait_for(lambda: sum(a.loud_frames.values()) >= 25, 15)
        finally:
            for peer in (a, b):
                await peer.close()

    asyncio.run(scenario())


def test_without_the_range_aiortc_binds_ephemeral_ports(sfu: Sfu) -> None:
    # The control case the firewall used to have to open whole: stock aioice's host sockets.
    async def scenario() -> str:
        a = Peer("a")
        try:
            status, body = await asyncio.get_running_loop().run_in_executor(
                None, sfu.post_offer, {**(await a.offer()), "token": sfu.token(sfu.admit("A"))}
            )
            assert status == 200, body
            return body["sdp"]
        finally:
            await a.close()

    ports = [int(p) for _, p in _CANDIDATE.findall(asyncio.run(scenario()))]
    assert ports and not any(41000 <= p <= 41009 for p in ports)


def test_a_full_range_refuses_to_bind_rather_than_leave_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        bind_media_ports(loop, PortRange(41020, 41021))
        held = [
            await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )
            for _ in range(2)
        ]
        assert sorted(t.get_extra_info("sockname")[1] for t, _ in held) == [41020, 41021]
        with pytest.raises(OSError, match="no free UDP port"):
            await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )
        for transport, _ in held:
            transport.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("text", ["40000", "40999-40000", "80-90", "a-b", "40000-70000"])
def test_bad_port_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="LOW-HIGH"):
        parse_port_range(text)

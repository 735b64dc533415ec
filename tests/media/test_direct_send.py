"""A LAN subscriber's forwarded packets leave at once (SRTP, then the socket), not through
aiortc's five awaited send layers, with real aiortc peers over loopback; the subscriber still
decodes them and the slot's sender reports still count them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import is_rtcp

from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


def test_lan_slots_send_forwarded_packets_without_the_awaited_chain(
    sfu: Sfu, monkeypatch: pytest.MonkeyPatch
) -> None:
    through_chain: dict[int, int] = {}  # SSRC -> RTP packets sent through _send_rtp
    send_rtp = RTCDtlsTransport._send_rtp

    async def counting_send_rtp(self: RTCDtlsTransport, data: bytes) -> None:
        if not is_rtcp(data):
            ssrc = int.from_bytes(data[8:12], "big")
            through_chain[ssrc] = through_chain.get(ssrc, 0) + 1
        await send_rtp(self, data)

    monkeypatch.setattr(RTCDtlsTransport, "_send_rtp", counting_send_rtp)

    async def scenario() -> None:
        a = Peer("a", audio_slots=1, video_slots=1)
        listener = Peer("listener", audio_slots=1, video_slots=1)
        ida, idl = sfu.admit("A"), sfu.admit("Listener")
        try:
            await sfu.join(a, ida)
            await sfu.join(listener, idl)
            room = sfu.box.rooms.rooms[sfu.session_id]
            me = room.participants[idl]
            audio, video = me.audio_slots[0], me.video_slots[0]

            def heard_and_seen() -> bool:
                return (
                    listener.loud_frames.get(audio.mid, 0) >= 50
                    and listener.frames.get(video.mid, 0) >= 15
                )

            assert await wait_for(heard_and_seen, 20), (
                dict(listener.loud_frames),
                dict(listener.frames),
            )
            assert not me.remote
            for slot in (audio, video):
                output: Any = slot.output
                assert output is not None and output.rewriter is not None
                sent = output.rewriter.packets_out
                assert sent >= (50 if slot.kind == "audio" else 15), (slot.kind, sent)
                # The sender's RTCP sender reports read these counters.
                assert slot.sender._RTCRtpSender__packet_count >= sent - 5
                # Before, every forwarded packet went through the awaited chain.
                assert through_chain.get(output.link.ssrc, 0) <= 5, (slot.kind, through_chain)
        finally:
            for peer in (a, listener):
                await peer.close()

    asyncio.run(scenario())

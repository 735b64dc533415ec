"""Video forwarded as rewritten RTP packets, end to end with real aiortc peers over loopback."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def _remote_streams(peer: Peer, mid: str) -> dict[int, Any]:
    transceiver = next(t for t in peer.pc.getTransceivers() if t.mid == mid)
    return transceiver.receiver._RTCRtpReceiver__remote_streams  # type: ignore[no-any-return]


def test_a_slot_switch_keeps_one_decodable_stream_of_forwarded_packets(sfu: Sfu) -> None:
    async def scenario() -> None:
        a, b = Peer("a", audio_slots=1, video_slots=1), Peer("b", audio_slots=1, video_slots=1)
        viewer = Peer("viewer", audio_slots=2, video_slots=1)
        ida, idb, idv = sfu.admit("A"), sfu.admit("B"), sfu.admit("Viewer")
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            await sfu.join(viewer, idv)
            room = sfu.box.rooms.rooms[sfu.session_id]
            slot = room.participants[idv].video_slots[0]
            assert slot.output is not None  # the room forwards packets

            sfu.box.media.call(_call(room.pin, ida), timeout=5)
            assert await wait_for(lambda: viewer.mid_showing("video", ida) is not None, 10)
            mid = viewer.mid_showing("video", ida)
            assert mid is not None
            assert await wait_for(lambda: viewer.frames[mid] >= 10, 20), dict(viewer.frames)

            # Pin b: the same slot (same mid, same SSRC) now shows b, from b's keyframe.
            sfu.box.media.call(_call(room.pin, idb), timeout=5)
            assert await wait_for(lambda: viewer.mid_showing("video", idb) == mid, 10)
            switched_at = viewer.frames[mid]
            assert await wait_for(lambda: viewer.frames[mid] >= switched_at + 15, 20), (
                switched_at,
                dict(viewer.frames),
            )

            output = slot.output
            assert output.feed is room.participants[idb].publications["video"].feed
            assert output.rewriter is not None
            sources = [s.source for s in output.rewriter.segments]
            feeds = {p: room.participants[p].publications["video"].feed for p in (ida, idb)}
            assert feeds[ida] in sources and feeds[idb] in sources
            assert output.rewriter.packets_out >= 25  # one packet at least per frame decoded
            # One stream at the subscriber: one SSRC, and the switch cost no jump in
            # sequence numbers (a jump would count as thousands of packets lost).
            streams = _remote_streams(viewer, mid)
            assert list(streams) == [output.link.ssrc]
            stats = streams[output.link.ssrc]
            assert stats.packets_received >= 25
            assert stats.packets_lost <= 10, stats.packets_lost
        finally:
            for peer in (a, b, viewer):
                await peer.close()

    asyncio.run(scenario())

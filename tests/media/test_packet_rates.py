"""A publisher's rate is known while its video goes only as forwarded packets, with real
aiortc peers over loopback. Adaptation plans a remote subscriber's video from each
publisher's measured rate (`Publication.bytes_in`); before, only assembled frames counted, so
with every subscriber on the packet path the rate read zero, a remote link's probe was sized
for an unknown rate and never filled, and the remote patient fell back to voice only
(the lab's 3g call: 0.1 fps)."""

from __future__ import annotations

import asyncio

from appliance.media.encoded import PACKET_OVERHEAD_BYTES
from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


def test_forwarded_video_counts_towards_the_publishers_rate_without_frames(sfu: Sfu) -> None:
    async def scenario() -> None:
        a = Peer("a", audio_slots=1, video_slots=1)
        viewer = Peer("viewer", audio_slots=1, video_slots=1)
        ida, idv = sfu.admit("A"), sfu.admit("Viewer")
        try:
            await sfu.join(a, ida)
            await sfu.join(viewer, idv)
            room = sfu.box.rooms.rooms[sfu.session_id]
            slot = room.participants[idv].video_slots[0]
            assert await wait_for(lambda: viewer.frames.get(slot.mid, 0) >= 15, 20), dict(
                viewer.frames
            )
            video = room.participants[ida].publications["video"]
            assert video.feed is not None and video.feed.packets_in >= 15
            assert video.frames_in == 0  # nothing decodes it: no frame was assembled
            assert video.bytes_in >= video.feed.packets_in * PACKET_OVERHEAD_BYTES, (
                video.bytes_in,
                video.feed.packets_in,
            )
        finally:
            for peer in (a, viewer):
                await peer.close()

    asyncio.run(scenario())

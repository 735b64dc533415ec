"""Real aiortc peers over loopback through the box's forwarding SFU."""

from __future__ import annotations

import asyncio

from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


def test_six_participants_each_receive_everyone_else(sfu: Sfu) -> None:
    async def scenario() -> None:
        peers = [Peer(f"p{i}") for i in range(6)]
        ids = [sfu.admit(f"Person {i}") for i in range(6)]
        try:
            for peer, pid in zip(peers, ids, strict=True):
                await sfu.join(peer, pid)

            def everyone_hears_and_sees() -> bool:
                for peer, pid in zip(peers, ids, strict=True):
                    others = [o for o in ids if o != pid]
                    for other in others:
                        a = peer.mid_showing("audio", other)
                        if a is None or peer.loud_frames[a] < 10:
                            return False
                    shown = [peer.mid_showing("video", o) for o in others]
                    shown = [m for m in shown if m is not None]
                    # last-N 4: four of the five others on video, each decoded.
                    if len(shown) != 4 or any(peer.frames[m] < 5 for m in shown):
                        return False
                return True

            ok = await wait_for(everyone_hears_and_sees, timeout=40)
            assert ok, [
                (dict(p.slots), dict(p.frames), dict(p.loud_frames)) for p in peers
            ]
            stats = sfu.stats()
            assert stats["participants"] == 6
            assert stats["publications"] == 12
        finally:
            for peer in peers:
                await peer.close()

    asyncio.run(scenario())

"""A participant who comes back to a held seat without its token starts afresh, and the
adaptation still times the new connection's reports (round trips, sender-report clocks)."""

from __future__ import annotations

import asyncio

from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


def test_a_fresh_rejoin_keeps_the_new_connections_report_clocks(sfu: Sfu) -> None:
    async def scenario() -> None:
        a, b, again = Peer("a"), Peer("b"), Peer("a-again")
        ida, idb = sfu.admit("A"), sfu.admit("B")

        async def clocks(pid: str) -> int:
            link = sfu.box.rooms.rooms[sfu.session_id].adaptation.links.get(pid)
            return 0 if link is None else len(link.clocks)

        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            assert sfu.box.media.call(clocks(ida), timeout=5) > 0
            await a.close()  # no goodbye: the seat is held
            assert await wait_for(lambda: sfu.stats()["held_seats"] == 1, 40)
            await sfu.join(again, ida, resume="not-the-token")
            assert await wait_for(lambda: any(e.get("type") == "welcome" for e in again.events), 10)
            # The fresh start forgets the old link's estimate, not the new link's slot clocks.
            assert sfu.box.media.call(clocks(ida), timeout=5) > 0
        finally:
            for peer in (a, b, again):
                await peer.close()

    asyncio.run(scenario())

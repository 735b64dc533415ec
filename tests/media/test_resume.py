"""A dropped connection keeps its seat for the grace period; the resume token gets it back."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


def _welcome(peer: Peer) -> dict[str, Any]:
    return next(e for e in peer.events if e.get("type") == "welcome")


async def _on_loop(fn: Any, *args: Any) -> Any:
    return fn(*args)


def test_a_dropped_participant_resumes_the_same_seat(sfu: Sfu) -> None:
    async def scenario() -> None:
        a, b = Peer("a"), Peer("b")
        ida, idb = sfu.admit("A"), sfu.admit("B")
        again = Peer("a-again")
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            # Both channels open first: an event sent before b's opens never reaches b.
            assert await wait_for(
                lambda: all(any(e.get("type") == "welcome" for e in p.events) for p in (a, b)), 10
            )
            resume = _welcome(a)["resume"]
            room = sfu.box.rooms.rooms[sfu.session_id]
            sfu.box.media.call(_on_loop(room.mute, ida, True), timeout=5)
            a.send({"type": "hand", "raised": True})
            assert await wait_for(lambda: any(e.get("type") == "hand" for e in b.events), 5)

            await a.close()  # the phone lost its network: no goodbye
            assert await wait_for(
                lambda: any(e.get("participant") == ida and e.get("reconnecting")
                            for e in b.events), 40
            ), b.events
            assert sfu.stats()["held_seats"] == 1
            assert not any(e.get("participant") == ida and e.get("left") for e in b.events)

            await sfu.join(again, ida, resume=resume)
            assert await wait_for(
                lambda: any(e.get("participant") == ida and e.get("resumed") for e in b.events),
                10,
            )
            assert await wait_for(
                lambda: any(e.get("type") == "welcome" for e in again.events), 10
            )
            welcome = _welcome(again)
            assert welcome["muted"] is True and welcome["hand"] is True
            assert welcome["resume"] != resume  # a new token for the new connection
            stats = sfu.stats()
            assert stats["participants"] == 2 and stats["held_seats"] == 0
            # Still muted by the facilitator: b hears nothing loud from a's new connection.
            assert await wait_for(lambda: again.mid_showing("video", idb) is not None, 10)
            # Counted from now: the slot may have carried a's voice before the mute.
            loud_before = dict(b.loud_frames)
            await asyncio.sleep(1.5)
            mid = b.mid_showing("audio", ida)
            assert mid is None or b.loud_frames[mid] - loud_before.get(mid, 0) <= 3
            # ...while a's video is back for b.
            assert await wait_for(lambda: b.mid_showing("video", ida) is not None, 10)
        finally:
            for peer in (a, b, again):
                await peer.close()

    asyncio.run(scenario())


def test_without_the_token_the_seat_starts_afresh_and_a_lapsed_seat_is_left(sfu: Sfu) -> None:
    async def scenario() -> None:
        sfu.box.rooms.grace_s = 6.0
        a, b, c = Peer("a"), Peer("b"), Peer("c")
        ida, idb, idc = sfu.admit("A"), sfu.admit("B"), sfu.admit("C")
        again = Peer("a-again")
        try:
            for peer, pid in ((a, ida), (b, idb), (c, idc)):
                await sfu.join(peer, pid)
            room = sfu.box.rooms.rooms[sfu.session_id]
            sfu.box.media.call(_on_loop(room.mute, ida, True), timeout=5)
            await a.close()
            assert await wait_for(lambda: sfu.stats()["held_seats"] == 1, 40)
            await sfu.join(again, ida, resume="not-the-token")
            assert await wait_for(
                lambda: any(e.get("type") == "welcome" for e in again.events), 10
            )
            assert _welcome(again)["muted"] is False
            await c.close()
            assert await wait_for(
                lambda: any(e.get("participant") == idc and e.get("reconnecting")
                            for e in b.events), 40
            )
            # c never came back: after the grace the others are told c left.
            assert await wait_for(
                lambda: any(e.get("participant") == idc and e.get("left") for e in b.events), 10
            )
            assert sfu.stats()["held_seats"] == 0
        finally:
            for peer in (a, b, c, again):
                await peer.close()

    asyncio.run(scenario())

"""Real aiortc peers over loopback through the box's forwarding SFU."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


def test_six_participants_each_hear_three_voices_and_see_four_videos(sfu: Sfu) -> None:
    async def scenario() -> None:
        peers = [Peer(f"p{i}") for i in range(6)]
        ids = [sfu.admit(f"Person {i}") for i in range(6)]
        try:
            for peer, pid in zip(peers, ids, strict=True):
                await sfu.join(peer, pid)

            def everyone_hears_and_sees() -> bool:
                for peer, pid in zip(peers, ids, strict=True):
                    others = [o for o in ids if o != pid]
                    # Everyone talks at once: each hears the three loudest others (K=3).
                    heard = [peer.mid_showing("audio", o) for o in others]
                    heard = [m for m in heard if m is not None]
                    if len(heard) != 3 or any(peer.loud_frames[m] < 10 for m in heard):
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


def test_late_joiner_gets_decodable_video_and_mute_silences_at_every_subscriber(sfu: Sfu) -> None:
    async def scenario() -> None:
        a, b, late = Peer("a"), Peer("b"), Peer("late")
        ida, idb, idl = sfu.admit("A"), sfu.admit("B"), sfu.admit("Late")
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            await asyncio.sleep(2)  # a's first keyframe is long gone when `late` joins
            await sfu.join(late, idl)
            video_mid = lambda: late.mid_showing("video", ida)  # noqa: E731
            assert await wait_for(
                lambda: video_mid() is not None and late.frames[video_mid()] >= 10, 20
            ), (late.slots, dict(late.frames))

            # The facilitator's mute (on the media layer) stops a's audio everywhere.
            room = sfu.box.rooms.rooms[sfu.session_id]
            sfu.box.media.call(_call(room.mute, ida), timeout=5)
            assert await wait_for(
                lambda: any(e.get("type") == "mute" and e.get("on") for e in a.events), 5
            )
            await asyncio.sleep(0.5)  # let frames already in flight drain
            before = {p: p.loud_frames[p.mid_showing("audio", ida)] for p in (b, late)}
            await asyncio.sleep(1.5)
            for p in (b, late):
                assert p.loud_frames[p.mid_showing("audio", ida)] - before[p] <= 3
            # b's audio still flows to late: only a was muted.
            mid_b = late.mid_showing("audio", idb)
            heard = late.loud_frames[mid_b]
            await asyncio.sleep(1)
            assert late.loud_frames[mid_b] > heard + 20
        finally:
            for peer in (a, b, late):
                await peer.close()

    asyncio.run(scenario())


async def _call(fn: object, *args: object) -> object:
    return fn(*args)  # type: ignore[operator]


def test_abrupt_close_is_noticed_and_nothing_is_left_behind(sfu: Sfu) -> None:
    async def scenario() -> None:
        peers = [Peer(f"c{i}") for i in range(3)]
        ids = [sfu.admit(f"C{i}") for i in range(3)]
        sfu.box.rooms.grace_s = 2.0  # the dropped seat is held this long, then let go
        baseline = sfu.stats()["tasks"]
        for peer, pid in zip(peers, ids, strict=True):
            await sfu.join(peer, pid)
        assert await wait_for(lambda: all(len(p.frames) >= 4 for p in peers), 20)
        # The first client vanishes without a goodbye: its transport just stops.
        await peers[0].close()
        assert await wait_for(lambda: sfu.stats()["participants"] == 2, 40), sfu.stats()
        assert await wait_for(
            lambda: any(e.get("reconnecting") for e in peers[1].events), 5
        )
        assert await wait_for(
            lambda: any(
                e.get("type") == "participant" and e.get("left") for e in peers[1].events
            ),
            5,
        )
        for peer in peers[1:]:
            await peer.close()
        assert await wait_for(lambda: sfu.stats()["rooms"] == 0, 40), sfu.stats()
        stats = sfu.stats()
        assert stats["peer_connections"] == 0 and stats["slots"] == 0
        assert stats["queued_frames"] == 0
        assert await wait_for(lambda: sfu.stats()["tasks"] <= baseline, 10), (
            baseline, sfu.stats()
        )

    asyncio.run(scenario())


def test_bad_requests_get_clear_4xx(sfu: Sfu) -> None:
    async def scenario() -> None:
        peer = Peer("x")
        offer = await peer.offer()
        pid = sfu.admit("X")
        # Malformed SDP.
        status, body = sfu.post_offer({"sdp": "hello", "type": "offer", "token": sfu.token(pid)})
        assert status == 400 and "malformed" in body["message"]
        status, body = sfu.post_offer({**offer, "type": "answer", "token": sfu.token(pid)})
        assert status == 400
        # Not JSON at all.
        reply = sfu.client.post("/api/media/offer", data="x", content_type="text/plain")
        assert reply.status_code == 400
        # Forged and expired tokens.
        forged = sfu.token(pid)[:-4] + "AAAA"
        status, body = sfu.post_offer({**offer, "token": forged})
        assert status == 403 and "not valid" in body["message"]
        from appliance.media.join_token import issue_join_token, token_secret

        secret = token_secret(sfu.box)
        expired = issue_join_token(secret, sfu.session_id, pid, "patient", ttl_s=-10)
        status, body = sfu.post_offer({**offer, "token": expired})
        assert status == 403 and "expired" in body["message"]
        # Unknown room.
        ghost = issue_join_token(secret, "no-such-session", pid, "patient")
        status, body = sfu.post_offer({**offer, "token": ghost})
        assert status == 404
        # A seat not admitted yet.
        store = sfu.box.store
        waiting = store.Attendance.create(
            session=sfu.session_id, patient=store.Patient.create(display_name="W"),
            display_name="W", status="waiting",
        )
        status, body = sfu.post_offer({**offer, "token": sfu.token(f"attendance/{waiting.id}")})
        assert status == 403 and "admitted" in body["message"]
        await peer.close()

    asyncio.run(scenario())


def test_thirteenth_participant_is_refused(sfu: Sfu) -> None:
    async def scenario() -> None:
        # Audio-only, receive-nothing peers keep this cheap: the limit is about seats.
        peers = [Peer(f"s{i}", audio_slots=0, video_slots=0) for i in range(13)]
        try:
            for peer in peers[:12]:
                await sfu.join(peer, sfu.admit("S"))
            offer = await peers[12].offer()
            status, body = sfu.post_offer({**offer, "token": sfu.token(sfu.admit("T"))})
            assert status == 409 and "full" in body["message"]
            # A locked room refuses a new patient with its own reason.
            room = sfu.box.rooms.rooms[sfu.session_id]
            sfu.box.media.call(_call(room.lock, True), timeout=5)
            status, body = sfu.post_offer({**offer, "token": sfu.token(sfu.admit("U"))})
            assert status == 403 and "locked" in body["message"]
        finally:
            for peer in peers:
                await peer.close()

    asyncio.run(scenario())


def test_one_lost_video_packet_costs_under_a_second_of_video(sfu: Sfu) -> None:
    async def scenario() -> None:
        a, b = Peer("a"), Peer("b")
        ida, idb = sfu.admit("A"), sfu.admit("B")
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            mid = lambda: b.mid_showing("video", ida)  # noqa: E731
            assert await wait_for(lambda: mid() is not None and b.frames[mid()] >= 10, 20)

            # Lose one of a's video packets at the box for good: the packet and every
            # retransmission of it, so it is neither forwarded nor cached and the
            # subscriber's NACK finds nothing: the box fills the hole, asks A for a keyframe.
            room = sfu.box.rooms.rooms[sfu.session_id]
            feed = room.participants[ida].publications["video"].feed
            output = room.participants[idb].video_slots[0].output
            lost: list[int] = []
            deliver = feed.deliver

            async def lossy_deliver(data: bytes, seq: int, *parsed: Any) -> None:
                if not lost:
                    lost.append(seq)
                if seq == lost[0]:
                    return
                await deliver(data, seq, *parsed)

            feed.deliver = lossy_deliver
            assert await wait_for(lambda: bool(lost), 5)
            before = b.frames[mid()]
            await asyncio.sleep(2.5)
            # 2.5 s at 15 fps is ~37 frames; at most ~1 s of them may be lost to the gap.
            assert b.frames[mid()] - before >= 20, (before, b.frames[mid()])
            assert output.nacks_missed >= 1  # b asked; the box had nothing to resend
        finally:
            for peer in (a, b):
                await peer.close()

    asyncio.run(scenario())


def test_breakouts_split_media_and_self_mute_is_announced(sfu: Sfu) -> None:
    async def scenario() -> None:
        a, b, c, late = Peer("a"), Peer("b"), Peer("c"), Peer("late")
        ida, idb, idc = sfu.admit("A"), sfu.admit("B"), sfu.admit("C")
        try:
            for peer, pid in ((a, ida), (b, idb), (c, idc)):
                await sfu.join(peer, pid)
            assert await wait_for(lambda: c.mid_showing("audio", ida) is not None, 20)
            sfu.box.media.call(
                sfu.box.rooms.set_breakouts(sfu.session_id, {ida: 1, idb: 1}), timeout=5
            )
            assert await wait_for(
                lambda: any(e.get("type") == "breakout" and e.get("room") == 1
                            for e in a.events), 5
            )
            # c, left in the main room, no longer receives a or b; a and b still have each other.
            assert await wait_for(
                lambda: c.mid_showing("audio", ida) is None
                and c.mid_showing("video", idb) is None
                and a.mid_showing("audio", idc) is None,
                5,
            ), (c.slots, a.slots)
            assert a.mid_showing("audio", idb) is not None
            sfu.box.media.call(sfu.box.rooms.set_breakouts(sfu.session_id, {}), timeout=5)
            assert await wait_for(lambda: c.mid_showing("audio", ida) is not None, 5)

            a.send({"type": "self-mute", "on": True})
            assert await wait_for(
                lambda: any(e.get("type") == "muted" and e.get("participant") == ida
                            and e.get("self") for e in b.events), 5
            )
            # Someone joining later learns it from the welcome.
            await sfu.join(late, sfu.admit("Late"))
            assert await wait_for(lambda: any(e.get("type") == "welcome" for e in late.events), 10)
            welcome = next(e for e in late.events if e.get("type") == "welcome")
            seen = {p["participant"]: p for p in welcome["participants"]}
            assert seen[ida]["self_muted"] is True and seen[idb]["self_muted"] is False
        finally:
            for peer in (a, b, c, late):
                await peer.close()

    asyncio.run(scenario())

"""What a hostile participant can no longer do in the call (issue #19).

Take over someone's live seat by replaying their join token, flood the room (and the store)
with chat, reach people in other breakout rooms, offer hundreds of receive slots, or crash
signalling with odd tokens and JSON. Real aiortc peers over loopback against the box's SFU.
"""

from __future__ import annotations

import asyncio
from typing import Any

from appliance.media.event_rate import CHAT_BURST
from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


def _welcome(peer: Peer) -> dict[str, Any]:
    return next(e for e in peer.events if e.get("type") == "welcome")


def _got(peer: Peer, **event: Any) -> bool:
    return any(all(e.get(k) == v for k, v in event.items()) for e in peer.events)


async def _post(sfu: Sfu, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return await asyncio.get_running_loop().run_in_executor(None, sfu.post_offer, body)


def test_a_replayed_join_token_cannot_take_a_live_seat(sfu: Sfu) -> None:
    async def scenario() -> None:
        ana, other = Peer("ana"), Peer("other")
        thief, back = Peer("thief"), Peer("ana-again")
        ida, ido = sfu.admit("Ana"), sfu.admit("Other")
        try:
            token = sfu.token(ida)
            await sfu.join(ana, ida)
            await sfu.join(other, ido)
            assert await wait_for(lambda: _got(ana, type="welcome"), 10)
            offer = await thief.offer()
            status, body = await _post(sfu, {**offer, "token": token})
            assert status == 409 and "already in the call" in body["message"]
            status, body = await _post(sfu, {**offer, "token": token, "resume": "guess"})
            assert status == 409
            await asyncio.sleep(1.0)
            room = sfu.box.rooms.rooms[sfu.session_id]
            assert room.participants[ida].pc is not None
            assert ana.pc.connectionState == "connected"
            assert not _got(ana, type="removed") and not _got(other, participant=ida, left=True)
            # Ana's own page, holding the resume token, may move her seat to a new connection.
            resume = _welcome(ana)["resume"]
            await sfu.join(back, ida, resume=resume)
            assert await wait_for(lambda: _got(other, participant=ida, resumed=True), 10)
            assert sfu.stats()["participants"] == 2
        finally:
            for peer in (ana, other, thief, back):
                await peer.close()

    asyncio.run(scenario())


def test_chat_flood_is_cut_to_a_trickle_and_the_sender_told(sfu: Sfu) -> None:
    async def scenario() -> None:
        spam, reader = Peer("spam"), Peer("reader")
        ids, _idr = sfu.admit("Spam"), sfu.admit("Reader")
        try:
            await sfu.join(spam, ids)
            await sfu.join(reader, _idr)
            assert await wait_for(
                lambda: spam.channel.readyState == "open" and _got(reader, type="welcome"), 10
            )
            for n in range(500):
                spam.send({"type": "chat", "text": f"{n:03d}" + "x" * 897})
            assert await wait_for(lambda: _got(spam, type="notice"), 10)
            await asyncio.sleep(3.0)  # anything still in flight arrives
            chats = [e for e in reader.events if e.get("type") == "chat"]
            # The burst, plus what the bucket refills while the flood is read (~0.5 a second).
            assert CHAT_BURST <= len(chats) <= CHAT_BURST + 4, len(chats)
            notice = next(e for e in spam.events if e.get("type") == "notice")
            assert "too fast" in notice["text"]
            stored = await asyncio.get_running_loop().run_in_executor(
                None, lambda: sfu.box.store.ChatMessage.select().count()
            )
            assert stored == len(chats)
        finally:
            for peer in (spam, reader):
                await peer.close()

    asyncio.run(scenario())


def test_chat_hand_and_mute_stay_in_the_breakout_room(sfu: Sfu) -> None:
    async def scenario() -> None:
        a, b, c, fac = Peer("a"), Peer("b"), Peer("c"), Peer("fac")
        ida, idb, idc = sfu.admit("A"), sfu.admit("B"), sfu.admit("C")
        idf = f"user:{sfu.facilitator_id}"
        try:
            for peer, pid in ((a, ida), (b, idb), (c, idc)):
                await sfu.join(peer, pid)
            await sfu.join(fac, idf, role="facilitator")
            assert await wait_for(lambda: all(_got(p, type="welcome") for p in (a, b, c, fac)), 10)
            sfu.box.media.call(
                sfu.box.rooms.set_breakouts(sfu.session_id, {ida: 1, idb: 1, idc: 2}), timeout=5
            )
            assert await wait_for(
                lambda: _got(a, type="breakout", room=1) and _got(c, type="breakout", room=2), 5
            )
            a.send({"type": "chat", "text": "only for room one"})
            a.send({"type": "hand", "raised": True})
            a.send({"type": "self-mute", "on": True})
            fac.send({"type": "mute", "participant": idb, "on": True})
            assert await wait_for(
                lambda: (
                    _got(b, type="chat", text="only for room one")
                    and _got(b, type="hand", participant=ida)
                    and _got(b, type="muted", participant=ida, self=True)
                    and _got(a, type="muted", participant=idb)
                ),
                5,
            ), b.events
            await asyncio.sleep(1.0)
            for outsider in (c, fac):  # another breakout room, and the main room
                assert not _got(outsider, type="chat"), outsider.name
                assert not _got(outsider, type="hand"), outsider.name
                assert not _got(outsider, type="muted"), outsider.name
            # Only c talks now: c's room learns c is the speaker, the others do not.
            a.tone.silent = b.tone.silent = fac.tone.silent = True
            assert await wait_for(lambda: _got(c, type="speaker", participant=idc), 10)
            await asyncio.sleep(1.0)
            for outsider in (a, b, fac):
                assert not _got(outsider, type="speaker", participant=idc), outsider.name
        finally:
            for peer in (a, b, c, fac):
                await peer.close()

    asyncio.run(scenario())


def _many_receive_slots(sdp: str, copies: int) -> str:
    """The offer's first m-line (its microphone) and `copies` minimal receive-only audio
    m-lines (~90 bytes each, so 500 of them fit the 64 KiB SDP limit)."""
    extra = "".join(
        f"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:x{n}\r\n"
        "a=recvonly\r\na=rtpmap:111 opus/48000/2\r\n"
        for n in range(copies)
    )
    head, first = sdp.split("\r\nm=")[:2]
    return f"{head}\r\nm={first.rstrip()}\r\n{extra}"


def test_offers_with_too_many_m_lines_are_refused(sfu: Sfu) -> None:
    async def scenario() -> None:
        big, wide, fine = Peer("big", audio_slots=12), Peer("wide"), Peer("fine", audio_slots=11)
        pid = sfu.admit("X")
        try:
            status, body = await _post(sfu, {**await big.offer(), "token": sfu.token(pid)})
            assert status == 400 and "receive 12 audio tracks; at most 11" in body["message"]
            offer = await wide.offer()
            offer["sdp"] = _many_receive_slots(offer["sdp"], 500)
            status, body = await _post(sfu, {**offer, "token": sfu.token(pid)})
            assert status == 400 and "m-lines" in body["message"], body
            status, body = await _post(sfu, {**await fine.offer(), "token": sfu.token(pid)})
            assert status == 200
            assert sfu.stats()["participants"] == 1
        finally:
            for peer in (big, wide, fine):
                await peer.close()

    asyncio.run(scenario())


def test_odd_tokens_and_json_get_clear_4xx(sfu: Sfu) -> None:
    pid = sfu.admit("X")
    token = sfu.token(pid)
    for odd in (token[:-2] + "é", "é" * 20 + ".x"):
        status, body = sfu.post_offer({"sdp": "v=0", "type": "offer", "token": odd})
        assert status == 403 and "malformed" in body["message"]
    nested = "[" * 20_000 + "]" * 20_000
    reply = sfu.client.post("/api/media/offer", data=nested, content_type="application/json")
    assert reply.status_code == 400 and "send JSON" in reply.get_json()["message"]
    huge = '{"sdp": "' + "a" * 300_000 + '"}'
    reply = sfu.client.post("/api/media/offer", data=huge, content_type="application/json")
    assert reply.status_code == 413
    for wrong in ({"token": 5}, {"token": ["x"]}, {"token": None, "sdp": {}}):
        status, body = sfu.post_offer(wrong)
        assert status == 403 and body["message"]


def test_ending_the_session_ends_the_call_and_its_seats(sfu: Sfu) -> None:
    from tests.web.conftest import csrf_from, sign_in

    clinician = sfu.client.application.test_client()
    sign_in(clinician, "facilitator1")
    session_url = f"/sessions/{sfu.session_id}"

    async def scenario() -> None:
        ana, back = Peer("ana"), Peer("ana-again")
        ida = sfu.admit("Ana")
        try:
            await sfu.join(ana, ida)
            assert await wait_for(lambda: _got(ana, type="welcome"), 10)
            resume = _welcome(ana)["resume"]
            loop = asyncio.get_running_loop()

            def end() -> int:
                token = csrf_from(clinician, session_url)
                return clinician.post(
                    session_url + "/state",
                    data={"csrf_token": token, "action": "end", "confirm": "yes"},
                ).status_code

            assert await loop.run_in_executor(None, end) == 302
            assert await wait_for(
                lambda: _got(ana, type="notice", text="The session has ended."), 5
            )
            stats = sfu.stats()
            assert stats["participants"] == 0 and stats["held_seats"] == 0
            offer = await back.offer()
            status, body = await _post(sfu, {**offer, "token": sfu.token(ida), "resume": resume})
            assert status == 403 and "ended" in body["message"]
        finally:
            for peer in (ana, back):
                await peer.close()

    asyncio.run(scenario())

"""Voices forwarded as rewritten RTP packets, end to end with real aiortc peers over loopback:
one continuous stream per audio slot across a change of voice, no frame made per forwarded
voice packet, and the mixer's voice (for remote and thin subscribers) through the same slot
numbering."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from appliance.media.adaptation import AudioMode
from appliance.media.adaptation import session as session_module
from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for

OPUS_STEP = 960  # 20 ms at 48 kHz, what the test peers' Opus encoder sends


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def _record_rtp(peer: Peer, kind: str) -> list[tuple[int, int, int, float]]:
    """(SSRC, sequence number, timestamp, arrival) of each RTP packet `peer` receives on its
    first receive-only `kind` m-line, as its receiver gets them."""
    transceiver = next(
        t for t in peer.pc.getTransceivers() if t.kind == kind and t.direction == "recvonly"
    )
    receiver = transceiver.receiver
    seen: list[tuple[int, int, int, float]] = []
    original = receiver._handle_rtp_packet

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        seen.append((packet.ssrc, packet.sequence_number, packet.timestamp, time.monotonic()))
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle
    return seen


def test_a_change_of_voice_keeps_one_continuous_stream_of_forwarded_packets(sfu: Sfu) -> None:
    async def scenario() -> None:
        a, b = Peer("a", audio_slots=1, video_slots=0), Peer("b", audio_slots=1, video_slots=0)
        listener = Peer("listener", audio_slots=1, video_slots=0)
        seen = _record_rtp(listener, "audio")
        ida, idb, idl = sfu.admit("A"), sfu.admit("B"), sfu.admit("Listener")
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            await sfu.join(listener, idl)
            room = sfu.box.rooms.rooms[sfu.session_id]
            slot = room.participants[idl].audio_slots[0]
            assert await wait_for(lambda: len(seen) >= 50, 20), len(seen)
            first = listener.mid_showing("audio", ida) and ida or idb
            other = idb if first == ida else ida
            assert listener.slots["audio"] == {slot.mid: first}

            # The voice heard is muted by the facilitator: the one slot now carries the other.
            sfu.box.media.call(_call(room.mute, first, True), timeout=5)
            assert await wait_for(lambda: listener.slots["audio"] == {slot.mid: other}, 10)
            switched_at = len(seen)
            assert await wait_for(lambda: len(seen) >= switched_at + 50, 20), len(seen)

            # One stream at the listener: one SSRC, every sequence number once and in order
            # (loopback loses nothing), timestamps on in 20 ms steps except at the change,
            # which moves on as far as time did there.
            assert {ssrc for ssrc, *_ in seen} == {slot.sender._ssrc}
            steps = [
                ((s2 - s1) & 0xFFFF, (t2 - t1) & 0xFFFFFFFF, at2 - at1)
                for (_, s1, t1, at1), (_, s2, t2, at2) in zip(seen, seen[1:], strict=False)
            ]
            assert all(seq_step == 1 for seq_step, _, _ in steps), steps
            jumps = [(ts, gap) for _, ts, gap in steps if ts != OPUS_STEP]
            assert len(jumps) >= 1, "no change of voice reached the listener"
            for ts_step, arrival_gap in jumps:
                assert OPUS_STEP <= ts_step <= 48_000 * (arrival_gap + 0.25), jumps

            # The packet path carried them, and no frame was made of either voice.
            output = slot.output
            assert output is not None and output.rewriter is not None
            feeds = {p: room.participants[p].publications["audio"].feed for p in (ida, idb)}
            sources = [s.source for s in output.rewriter.segments]
            assert feeds[ida] in sources and feeds[idb] in sources
            assert output.rewriter.packets_out >= 100
            for pid in (ida, idb):
                publication = room.participants[pid].publications["audio"]
                assert publication.feed is not None and publication.feed.packets_in >= 100
                assert publication.frames_in == 0, (pid, publication.frames_in)
            # Voice choice still reads the loudness the packets carried.
            assert room.participants[other].publications["audio"].energy > 0.05
        finally:
            for peer in (a, b, listener):
                await peer.close()

    asyncio.run(scenario())


def test_the_mixed_voice_reaches_a_mixed_subscriber_through_its_slot_numbering(
    sfu: Sfu, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixed_for: set[str] = set()
    allocate = session_module.allocate

    def allocate_mixed(*args: Any, **kwargs: Any) -> Any:
        plans = allocate(*args, **kwargs)
        for sub in mixed_for & set(plans):
            plans[sub].audio = AudioMode.MIXED  # as a thin or weak remote link is planned
        return plans

    monkeypatch.setattr(session_module, "allocate", allocate_mixed)

    async def scenario() -> None:
        a, b = Peer("a", audio_slots=2, video_slots=0), Peer("b", audio_slots=2, video_slots=0)
        listener = Peer("listener", audio_slots=2, video_slots=0)
        ida, idb, idl = sfu.admit("A"), sfu.admit("B"), sfu.admit("Listener")
        mixed_for.add(idl)
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            await sfu.join(listener, idl)
            room = sfu.box.rooms.rooms[sfu.session_id]
            slot = room.participants[idl].audio_slots[0]
            assert await wait_for(lambda: slot.mid in listener.loud_frames, 20)
            assert await wait_for(lambda: listener.loud_frames[slot.mid] >= 50, 20), dict(
                listener.loud_frames
            )
            assert slot.source is room.subscriptions.mixer.feeds[idl]
            output = slot.output
            assert output is not None and output.rewriter is not None
            assert output.rewriter.packets_out >= 50
            # The mixer decodes the voices it mixes: frames are made for those, while the
            # others (a and b hear each other) still get each other's packets forwarded.
            for pid in (ida, idb):
                assert room.participants[pid].publications["audio"].frames_in > 0
            b_slot = next(s for s in room.participants[idb].audio_slots if s.source is not None)
            assert b_slot.output is not None and b_slot.output.rewriter is not None
            assert b_slot.output.rewriter.packets_out > 0
        finally:
            for peer in (a, b, listener):
                await peer.close()

    asyncio.run(scenario())

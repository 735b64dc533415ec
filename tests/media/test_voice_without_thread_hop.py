"""Forwarded voices reach their publication on the media loop as their packets arrive, not
through aiortc's decoder thread, with real aiortc peers over loopback.

Measured in the lab (`benchmarks/audio_timing.py` and a probe of times in the box, machine
at load 16): the decoder thread's hop there and back held a forwarded voice 17 ms at the
90th percentile and 61 ms at the 99th, as long again as the media loop's own lag; browsers
buffered for that jitter.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from appliance.media import room as room_module
from appliance.media.encoded import EncodedFrame
from appliance.media.publication import Publication
from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


def test_voices_skip_the_decoder_thread_and_still_reach_the_other_side(
    sfu: Sfu, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[tuple[str, bool]] = []  # (kind, came through the pump that reads the track)
    take = Publication.take

    def recording_take(self: Publication, frame: EncodedFrame) -> None:
        taken.append((frame.kind, asyncio.current_task() is self._task))
        take(self, frame)

    monkeypatch.setattr(Publication, "take", recording_take)
    # Voices as frames, as the mixer reads them: a forwarding room sends voices as packets
    # and makes no frames for them at all (tests/media/test_voice_packets.py).
    monkeypatch.setattr(
        "appliance.media.rooms.Room", functools.partial(room_module.Room, forward_voices=False)
    )

    async def scenario() -> None:
        a, b = Peer("a"), Peer("b")
        ida, idb = sfu.admit("A"), sfu.admit("B")
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)

            def b_hears_a() -> bool:
                mid = b.mid_showing("audio", ida)
                return mid is not None and b.loud_frames[mid] > 50

            assert await wait_for(b_hears_a, 20), (b.slots, dict(b.loud_frames))
        finally:
            for peer in (a, b):
                await peer.close()

    asyncio.run(scenario())
    audio = [via_pump for kind, via_pump in taken if kind == "audio"]
    # Before, every one came through the pump (the task reading the remote track).
    assert len(audio) > 100 and not any(audio), (len(audio), sum(audio))

"""A receive slot's RTP timestamps across a switch of what it shows: continuous, and as far
apart as time really passed (browsers read a timestamp that lags arrival as network delay
and grow their jitter buffer for it)."""

from __future__ import annotations

import asyncio

import pytest

from appliance.media.encoded import AUDIO_TIME_BASE, EncodedFrame
from appliance.media.slot import SlotTrack


class Source:
    kind = "audio"

    def __init__(self, participant_id: str) -> None:
        self.participant_id = participant_id
        self.slots: set[object] = set()

    def request_keyframe(self) -> bool:
        return False


def test_audio_slot_timestamps_follow_real_time_across_a_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [50.0]
    monkeypatch.setattr("appliance.media.slot.time.monotonic", lambda: clock[0])

    async def scenario() -> list[int]:
        slot = SlotTrack("audio", mid="0")
        a, b = Source("a"), Source("b")
        out = []
        slot.attach(a)  # type: ignore[arg-type]
        for n in range(5):
            slot.push(a, EncodedFrame(b"x", 7_000 + n * 960, AUDIO_TIME_BASE, "audio"))  # type: ignore[arg-type]
            out.append((await slot.recv()).pts)
            clock[0] += 0.02
        # Nobody speaks for 3 s, then another voice fills the slot.
        slot.attach(None)
        clock[0] += 3.0
        slot.attach(b)  # type: ignore[arg-type]
        for n in range(3):
            slot.push(b, EncodedFrame(b"y", 900_000 + n * 960, AUDIO_TIME_BASE, "audio"))  # type: ignore[arg-type]
            out.append((await slot.recv()).pts)
            clock[0] += 0.02
        # A switch from one voice straight to another: one step apart.
        slot.attach(a)  # type: ignore[arg-type]
        slot.push(a, EncodedFrame(b"z", 123, AUDIO_TIME_BASE, "audio"))  # type: ignore[arg-type]
        out.append((await slot.recv()).pts)
        return out

    pts = asyncio.run(scenario())
    assert pts[:5] == [0, 960, 1920, 2880, 3840]
    gap = pts[5] - pts[4]
    assert gap == pytest.approx((3.0 + 0.02) * 48_000, abs=960)  # as long as the silence
    assert pts[6] - pts[5] == 960 and pts[7] - pts[6] == 960
    assert 960 <= pts[8] - pts[7] <= 2 * 960

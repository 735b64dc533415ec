"""The browser lab's reading of getStats() samples, on known counters: concealment share and
stretches, jitter buffer delay, frame rates and freezes, and counters restarting with a new
peer connection (a reconnect)."""

from __future__ import annotations

from typing import Any

import pytest

from harness import browserstats

pytestmark = pytest.mark.timeout(30)


def _audio_row(second: int, concealed: float, events: int, who: str = "a") -> dict[str, Any]:
    return {
        "mid": "1",
        "kind": "audio",
        "who": who,
        "totalSamplesReceived": 48000 * second,
        "concealedSamples": concealed * 48000,
        "concealmentEvents": events,
        "jitterBufferDelay": 0.1 * 50 * second,
        "jitterBufferEmittedCount": 50 * second,
    }


def test_concealment_share_stretch_and_jitter_buffer() -> None:
    # 10 s of audio: a 0.1 s concealment at 2 s, then one 1.5 s stretch over 5-7 s.
    concealed = [0, 0, 0.1, 0.1, 0.1, 0.6, 1.6, 1.6, 1.6, 1.6, 1.6]
    events = [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    samples = [
        {"t": 100.0 + s, "pc": 1, "rows": [_audio_row(s, concealed[s], events[s])]}
        for s in range(11)
    ]
    got = browserstats.audio(samples, (100.0, 110.0))
    assert got.concealed_pct == pytest.approx(16.0)
    assert got.longest_concealed_s == pytest.approx(1.5)
    assert got.jitter_buffer_ms == 100
    assert got.jitter_target_ms is None  # these rows carry no target
    assert got.heard_s == pytest.approx(10.0)
    # The browser's own target, per emitted sample like the delay (here 40 ms).
    targeted = [
        {
            **sample,
            "rows": [
                {**row, "jitterBufferTargetDelay": 0.04 * 50 * (sample["t"] - 100)}
                for row in sample["rows"]
            ],
        }
        for sample in samples
    ]
    assert browserstats.audio(targeted, (100.0, 110.0)).jitter_target_ms == 40
    # Nobody heard from a participant: all of it counts as concealed, none as heard.
    silent = browserstats.audio(samples, (100.0, 110.0), from_whom={"b"})
    assert silent.concealed_pct == 100.0 and silent.heard_s == 0.0
    assert silent.longest_concealed_s == 10.0
    # The box's mix carries every voice.
    mixed = [{"t": 100.0 + s, "pc": 1, "rows": [_audio_row(s, 0, 0, who="mix")]} for s in range(11)]
    assert browserstats.audio(mixed, (100.0, 110.0), from_whom={"b"}).heard_s == 10.0


def test_a_reconnect_restarts_the_counters_without_negative_steps() -> None:
    first = [{"t": 100.0 + s, "pc": 1, "rows": [_audio_row(s, 0, 0)]} for s in range(6)]
    # The new connection's counters start again from zero at 106 s.
    second = [{"t": 106.0 + s, "pc": 2, "rows": [_audio_row(s, 0, 0)]} for s in range(5)]
    got = browserstats.audio(first + second, (100.0, 110.0))
    assert got.heard_s == pytest.approx(9.0)  # the second between connections is not heard
    assert got.concealed_pct == 0.0


def _video_row(
    frames: int, freezes: int = 0, frozen_s: float = 0.0, who: str | None = "a", mid: str = "5"
) -> dict[str, Any]:
    return {
        "mid": mid,
        "kind": "video",
        "who": who,
        "framesDecoded": frames,
        "freezeCount": freezes,
        "totalFreezesDuration": frozen_s,
        "frameWidth": 640,
    }


def test_frame_rate_freezes_and_a_picture_that_never_came() -> None:
    # 15 fps, except 3-5 s when nothing was decoded (the browser counts the freeze at 5 s),
    # and from 8 s on a picture standing still to the window's end.
    frames, total = [], 0
    for s in range(11):
        frames.append(total)
        total += 0 if 3 <= s < 5 or s >= 8 else 15
    rows = [[_video_row(frames[s], 1 if s >= 5 else 0, 2.0 if s >= 5 else 0.0)] for s in range(11)]
    samples = [{"t": 100.0 + s, "pc": 1, "rows": rows[s]} for s in range(11)]
    got = browserstats.video(samples, (100.0, 110.0))
    assert got.fps == pytest.approx(9.0) and got.pictures == 1 and got.frame_width == 640
    assert got.longest_freeze_s == pytest.approx(2.0)
    # Expecting a second picture that no slot showed: 0 fps for it, frozen all along.
    two = browserstats.video(samples, (100.0, 110.0), expected=2)
    assert two.min_fps == 0.0 and two.longest_freeze_s == pytest.approx(10.0)
    # A slot showing nobody is no picture.
    empty = [{"t": 100.0 + s, "pc": 1, "rows": [_video_row(0, who=None)]} for s in range(11)]
    assert browserstats.video(empty, (100.0, 110.0)).pictures == 0


def test_notices_are_counted_inside_the_window_only() -> None:
    notices = [
        [99.0, "banner: Connection interrupted"],
        [105.0, "tile: tile-x"],
        [111.0, "tile: tile-x"],
    ]
    assert browserstats.notices_in(notices, (100.0, 110.0)) == 1

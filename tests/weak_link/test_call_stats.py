"""The call harness's measurements on known input: send times read from tones, on-time share,
gaps, frame rates and freezes."""

from __future__ import annotations

import av
import pytest

from harness.caller import TONE_PERIOD_S, TONES, Clip, delay_for, tone_of
from harness.callrun import CallRun, Seat

pytestmark = pytest.mark.timeout(30)


def test_every_clip_packet_sounds_its_own_tone():
    clip = Clip.encode(seconds=1.0)
    assert len(clip.audio) == TONES and len(set(clip.audio)) == TONES
    decoder = av.CodecContext.create("opus", "r")
    heard = []
    for _ in range(2):  # the second lap, as a receiver mid-call decodes it
        heard = [tone_of(decoder.decode(av.Packet(p))[-1].to_ndarray().mean(axis=0))
                 for p in clip.audio]
    assert sum(h == k for k, h in enumerate(heard)) >= TONES - 2


def test_delay_is_read_from_the_latest_send_of_that_tone():
    assert delay_for(1.0 + 0.3, 50) == pytest.approx(0.3)
    # Sent at 0.1 s (tone 5); read one period later the same tone means a fresh packet.
    assert delay_for(0.15, 5) == pytest.approx(0.05)
    assert delay_for(0.1 + TONE_PERIOD_S + 0.05, 5) == pytest.approx(0.05)
    assert delay_for(0.099, 5) == pytest.approx(-0.001)  # read a hair early: still that packet


def _run(audio: dict, video: dict, bins: list[int] | None = None,
         events: list | None = None) -> CallRun:
    seats = [Seat("a"), Seat("b"), Seat("c", publish=("audio",))]
    return CallRun(mode="clinicbox", seats=seats, seconds=10.0,
                   reports={"a": {"audio": audio, "video": video,
                                  "bytes_per_bin": bins or [], "events": events or []}},
                   box_cpu_pct=0.0, forwarder_late_frames=0, forwarder_max_late_ms=0.0,
                   forwarder_frames=100)


def test_audio_on_time_share_and_longest_gap():
    # From b: every packet of 2-4 s, 100 ms late. From c: half a second of them 600 ms late.
    b = [[t / 50 + 0.1, 0.1] for t in range(100, 200)]
    c = [[t / 50 + (0.6 if 125 <= t < 150 else 0.1), 0.6 if 125 <= t < 150 else 0.1]
         for t in range(100, 200)]
    stats = _run({"1": b, "2": c}, {}).audio("a", (2.0, 4.0))
    assert stats.streams == 2
    assert stats.on_time_pct == pytest.approx(100 * 175 / 200)
    assert stats.delivered_pct == 100.0
    assert 500 <= stats.longest_gap_ms <= 540  # c's late half second, plus one packet
    # A publisher heard nothing from counts as a whole-window gap.
    assert _run({"1": b}, {}).audio("a", (2.0, 4.0)).longest_gap_ms == 2000


def test_video_rate_and_freeze_and_downlink():
    smooth = [i / 15 for i in range(150)]
    frozen = [t for t in smooth if not 5.0 <= t < 7.0]
    run = _run({}, {"3": smooth, "4": frozen}, bins=[1000] * 20)
    stats = run.video("a", (2.0, 8.0))
    assert stats.streams == 2
    assert stats.fps == pytest.approx((90 + 60) / 2 / 6, abs=0.1)
    assert stats.longest_freeze_s == pytest.approx(2.0, abs=0.1)
    assert stats.min_fps == pytest.approx(10.0, abs=0.1)
    assert run.downlink_kbps("a", (2.0, 8.0)) == pytest.approx(16.0)
    assert not run.stalled


def test_video_of_chosen_publishers_follows_what_each_slot_showed():
    # Slot 3 shows b throughout; slot 4 shows c until 5 s, then nothing.
    events = [[0.5, {"type": "slots", "video": {"3": "b", "4": "c"}}],
              [5.0, {"type": "slots", "video": {"3": "b", "4": None}}]]
    smooth = [i / 15 for i in range(150)]
    run = _run({}, {"3": smooth, "4": smooth}, events=events)
    only_b = run.video("a", (2.0, 8.0), publishers={"b"})
    assert only_b.streams == 1 and only_b.min_fps == pytest.approx(15.0, abs=0.1)
    # c's slot counts only while it showed c: 3 of 6 s, then a 3 s freeze.
    only_c = run.video("a", (2.0, 8.0), publishers={"c"})
    assert only_c.fps == pytest.approx(7.5, abs=0.1)
    assert only_c.longest_freeze_s == pytest.approx(3.0, abs=0.1)


def test_a_stream_never_on_time_is_one_long_gap():
    late = [[t / 50 + 0.9, 0.9] for t in range(100, 200)]
    stats = _run({"1": late}, {}).audio("a", (2.0, 4.0))
    assert stats.on_time_pct == 0.0 and stats.delivered_pct == 50.0  # c sent nothing to a
    assert stats.longest_gap_ms == 2000


def test_a_mixed_part_counts_for_every_voice_once_per_20_ms():
    # The box's mix for a: parts of 2-4 s, 100 ms late, ten of them lost, and five read as
    # sent in a 20 ms slot already delivered (the mix re-timed): those must not hide the loss.
    parts = [[t / 50 + 0.1, 0.1, 1] for t in range(100, 200) if not 150 <= t < 160]
    parts += [[t / 50 + 0.105, 0.1, 1] for t in range(120, 125)]
    stats = _run({"1": parts}, {}).audio("a", (2.0, 4.0))
    assert stats.on_time_pct == 90.0 and stats.delivered_pct == 90.0  # for b and c alike
    assert 200 <= stats.longest_gap_ms <= 220  # the ten lost parts

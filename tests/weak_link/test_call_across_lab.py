"""A synthetic call end to end through the lab: a LAN nurse and a patient behind 3G, through
ClinicBox's SFU; the harness sees audio and video arrive both ways, and the patient hears the
nurse on time.

The nurse is not asserted to hear the patient on time: one packet lost on the 3G uplink holds
the box's audio jitter buffer (aiortc's, capacity 16, which the SFU's inherits) until it is
full, and from then on it releases one packet per packet received, ~300 ms late for good
(docs/weak-links.md, "Measured").

Stock aiortc relaying, the baseline, is compared in `benchmarks/weak_link.py --aiortc`, not
here: its figures under a busy machine are no pass/fail question about the product. Its call
still runs, without figures judged, under `make test-long` (the harness's stock mode must not
rot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Lab, profiles
from harness.caller import Clip
from harness.callrun import CallRun, Seat, repeat_while_host_stalled, run_call

pytestmark = [pytest.mark.netns, pytest.mark.lab_call, pytest.mark.timeout(240)]  # up to 3 calls


def _call(
    lab: Lab, tmp_path: Path, mode: str, seconds: float, window: tuple[float, float]
) -> CallRun:
    clip = tmp_path / "clip.json"
    Clip.encode().save(clip)
    box = lab.host("box")
    seats = [Seat("nurse", role="facilitator"), Seat("p1", link=profiles.THREE_G)]
    hosts = {s.name: lab.host(s.name, link=s.link) for s in seats}
    # Made again (three calls at most) while the host stalled it in the window measured.
    run, _ = repeat_while_host_stalled(
        lambda: run_call(lab, box, hosts, seats, mode=mode, seconds=seconds, clip=clip), window
    )
    assert run.errors == {}
    return run


def test_two_person_call_over_3g(lab: Lab, tmp_path: Path):
    # A remote patient starts with voices only and probes up to video (docs/weak-links.md):
    # 30 s leave room for one failed probe and its 8 s wait, which a busy CI machine caused
    # once (0.4 fps over 12-20 s of a 20 s call).
    window = (22.0, 30.0)
    run = _call(lab, tmp_path, "clinicbox", 30.0, window)
    for name in ("nurse", "p1"):
        audio = run.audio(name, window)
        assert audio.streams == 1
        assert audio.delivered_pct >= 90, (name, audio)
        video = run.video(name, window)
        assert video.streams == 1 and video.fps >= 5, (name, video)
    heard = run.audio("p1", window)
    assert heard.on_time_pct >= 80 and heard.longest_gap_ms < 1000, heard
    assert run.downlink_kbps("p1", window) > 100  # a voice and a video, with headers


@pytest.mark.long
def test_stock_relaying_baseline_still_calls_over_3g(lab: Lab, tmp_path: Path):
    """The benchmark's baseline mode works: both people get a voice and a picture. How well
    (on time, frame rate) is the benchmark's to report, not a test's to judge."""
    window = (6.0, 12.0)
    run = _call(lab, tmp_path, "stock", 12.0, window)
    for name in ("nurse", "p1"):
        assert run.audio(name, window).streams == 1, name
        assert run.video(name, window).streams == 1, name

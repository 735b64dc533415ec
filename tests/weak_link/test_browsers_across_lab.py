"""Real browsers in the weak-link lab: `clinicbox serve` in the box host, headless Chromium and
Firefox ESR in their own namespaces joining the box's call page as the clinic's people do
(harness.browsercall), judged by what each browser's getStats() says it played."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import Lab, profiles
from harness.browsercall import BrowserSeat, run_browser_call

pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.netns, pytest.mark.browser, pytest.mark.timeout(180)]


def test_remote_chromium_patient_sees_video_and_no_reconnect_notice_on_a_clean_link(
    lab: Lab, tmp_path: Path
) -> None:
    seats = [
        BrowserSeat("nurse", role="facilitator"),
        BrowserSeat("p1", link=profiles.UNSHAPED),
    ]
    box = lab.host("box")
    hosts = {s.name: lab.host(s.name, link=s.link) for s in seats}
    run = run_browser_call(lab, box, hosts, seats, seconds=20, workdir=tmp_path)
    p1, nurse = run.participants["p1"], run.participants["nurse"]
    assert p1.join_s is not None and nurse.join_s is not None, "someone never heard anything"
    # Voices both ways: the patient hears the nurse and the nurse hears the patient.
    assert run.audio("p1", ["nurse"]).heard_s >= 15
    assert run.audio("nurse", ["p1"]).heard_s >= 15
    # The nurse's picture reaches the remote patient, and the patient's reaches the nurse.
    assert run.video("nurse", ["p1"]).fps >= 10
    seen = run.video("p1", ["nurse"])
    assert seen.pictures == 1 and seen.fps >= 10, seen
    # Nothing was cut: no page may say the connection was interrupted or someone reconnects.
    assert (run.notices("p1"), run.notices("nurse")) == (0, 0), (p1.notices, nurse.notices)


def test_firefox_and_chromium_see_and_hear_each_other_through_the_box(
    lab: Lab, tmp_path: Path
) -> None:
    seats = [BrowserSeat("nurse", role="facilitator"), BrowserSeat("fay", browser="firefox")]
    box = lab.host("box")
    hosts = {s.name: lab.host(s.name) for s in seats}
    firefoxes_before = _firefox_pids()
    run = run_browser_call(lab, box, hosts, seats, seconds=10, workdir=tmp_path)
    for listener, speaker in (("fay", "nurse"), ("nurse", "fay")):
        heard = run.audio(listener, [speaker])
        assert heard.heard_s >= 8 and heard.concealed_pct < 10, (listener, heard)
        seen = run.video(listener, [speaker])
        assert seen.pictures == 1 and seen.fps >= 5 and seen.frame_width > 0, (listener, seen)
    # puppeteer runs Firefox in a process group of its own: the call's end must stop it too.
    assert _firefox_pids() - firefoxes_before == set()


def _firefox_pids() -> set[int]:
    """Firefox ESR processes running now (by their executable)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and "firefox" in os.readlink(entry / "exe"):
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def test_remote_firefox_patient_sees_and_is_seen_with_no_reconnect_notice(
    lab: Lab, tmp_path: Path
) -> None:
    """Firefox ESR classed remote (behind the link emulator): it gets the nurse's own picture,
    not mixed audio alone; its picture decodes at the nurse; and neither page shows a
    reconnect notice on a clean link (Firefox's banner once stayed up a whole call)."""
    seats = [
        BrowserSeat("nurse", role="facilitator"),
        BrowserSeat("fay", link=profiles.UNSHAPED, browser="firefox"),
    ]
    box = lab.host("box")
    hosts = {s.name: lab.host(s.name, link=s.link) for s in seats}
    run = run_browser_call(lab, box, hosts, seats, seconds=15, workdir=tmp_path)
    fay, nurse = run.participants["fay"], run.participants["nurse"]
    assert fay.join_s is not None and nurse.join_s is not None, "someone never heard anything"
    assert run.audio("fay", ["nurse"]).heard_s >= 10
    assert run.audio("nurse", ["fay"]).heard_s >= 10
    for viewer, shown in (("fay", "nurse"), ("nurse", "fay")):
        seen = run.video(viewer, [shown])
        assert seen.pictures == 1 and seen.fps >= 5 and seen.frame_width > 0, (viewer, seen)
    assert (run.notices("fay"), run.notices("nurse")) == (0, 0), (fay.notices, nurse.notices)

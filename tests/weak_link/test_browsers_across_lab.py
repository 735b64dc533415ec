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


def test_a_patient_pressing_join_during_the_connection_check_offers_for_a_thin_link(
    lab: Lab, tmp_path: Path
) -> None:
    """The lab presses "Join the call" as soon as the camera works, before the pre-call
    check's five timed requests (~0.9 s each on this far link) have answered. The page waits
    for the check, so the slow link gets the thin first offer (one send slot per kind, two
    audio and one video receive slot) instead of the full 11-slot one that, on GPRS, raced
    the check through a 20 kbps uplink and was dropped by the box mid-upload."""
    far = profiles.custom("far", delay_ms=450)
    seats = [BrowserSeat("nurse", role="facilitator"), BrowserSeat("p1", link=far)]
    box = lab.host("box")
    hosts = {s.name: lab.host(s.name, link=s.link) for s in seats}
    run = run_browser_call(lab, box, hosts, seats, seconds=5, workdir=tmp_path)
    p1 = run.participants["p1"]
    assert p1.join_s is not None and p1.me is not None, "the far patient never got in"
    offered = {s.get("transceivers") for s in p1.samples if s.get("rows")}
    assert offered == {5}, offered
    # The nurse on the LAN was not held back: she checked a fast link and offered in full.
    nurse = {s.get("transceivers") for s in run.participants["nurse"].samples if s.get("rows")}
    assert nurse == {11}, nurse

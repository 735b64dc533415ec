"""The pre-call check reads the call page's own loading before it sends timed requests, in
real Chromium behind the lab's link emulator.

On GPRS the check's three timed requests (one after another, each a round trip and an upload
through 20 kbps) had taken ~9 s between "Join the call" and the offer. The page's style sheet
and script already crossed the same link, and the time from sending each request to its first
byte is what a timed request measures: on a far link (450 ms each way) both read slow, so one
timed request more settles the verdict, and it travels alone (the page's first status poll
waits for the verdict, and its icon is in the page). On the LAN nothing changes: fast
answers, full offer. Both tests judge one lab call (module fixture `far_call`).
"""

from __future__ import annotations

import pytest

from harness import Lab, LabUnavailable, profiles
from harness.browsercall import BrowserCallRun, BrowserSeat, run_browser_call

pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.netns, pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def far_call(tmp_path_factory: pytest.TempPathFactory) -> BrowserCallRun:
    """One lab call, judged by both tests: the nurse on the LAN and `p1` behind a far link
    (450 ms each way), 3 s measured after both hear. The lab presses "Join the call" as soon
    as the camera works, so `p1` presses it during the pre-call check."""
    far = profiles.custom("far", delay_ms=450)
    seats = [BrowserSeat("nurse", role="facilitator"), BrowserSeat("p1", link=far)]
    try:
        with Lab() as lab:
            box = lab.host("box")
            hosts = {s.name: lab.host(s.name, link=s.link) for s in seats}
            return run_browser_call(
                lab, box, hosts, seats, seconds=3, workdir=tmp_path_factory.mktemp("far_call")
            )
    except LabUnavailable as exc:
        pytest.skip(f"weak-link lab unavailable: {exc}")


def test_a_patient_pressing_join_during_the_connection_check_offers_for_a_thin_link(
    far_call: BrowserCallRun,
) -> None:
    """The lab presses "Join the call" as soon as the camera works, before the pre-call
    check's timed requests (~0.9 s each on this far link) have answered. The page waits
    for the check, so the slow link gets the thin first offer (one send slot per kind, two
    audio and one video receive slot) instead of the full 11-slot one that, on GPRS, raced
    the check through a 20 kbps uplink and was dropped by the box mid-upload."""
    p1 = far_call.participants["p1"]
    assert p1.join_s is not None and p1.me is not None, "the far patient never got in"
    offered = {s.get("transceivers") for s in p1.samples if s.get("rows")}
    assert offered == {5}, offered
    # The nurse on the LAN was not held back: she checked a fast link and offered in full.
    nurse = {s.get("transceivers") for s in far_call.participants["nurse"].samples if s.get("rows")}
    assert nurse == {11}, nurse


def test_a_far_patient_offers_after_one_timed_request_and_the_lan_after_a_full_check(
    far_call: BrowserCallRun,
) -> None:
    p1, nurse = far_call.participants["p1"], far_call.participants["nurse"]
    assert p1.join_s is not None and p1.me is not None, "the far patient never got in"

    def pings_before_offer(requests: list[dict]) -> int:
        offer = next(r for r in requests if r["path"].endswith("/api/media/offer"))
        return sum(
            1 for r in requests if r["path"].endswith("/ping") and r["start"] < offer["start"]
        )

    assert pings_before_offer(p1.requests) == 1, p1.requests
    # That request travels alone: no status poll and no icon request beside it (on GPRS they
    # shared the 20 kbps uplink and the timed request read 5-8 s).
    pings = [r for r in p1.requests if r["path"].endswith("/ping")]
    beside = [
        (r["path"], r["start"], r["end"])
        for r in p1.requests
        for ping in pings
        if r is not ping
        and r["start"] < ping["end"]
        and ping["start"] < r["end"]
        and r["path"] != "/call"
        and "/static/call." not in r["path"]
    ]
    assert beside == [], beside
    assert not [r for r in p1.requests if "favicon" in r["path"]], p1.requests
    # Thin: one send slot per kind, two audio and one video receive slot.
    assert {s.get("transceivers") for s in p1.samples if s.get("rows")} == {5}
    # Its static files were the check's first answers: both slower than 800 ms.
    static = [r for r in p1.requests if "/static/call." in r["path"]]
    assert len(static) == 2 and all(r["response"] - r["request"] >= 800 for r in static), static
    # The LAN: fast answers, five of them in all (two static files and three timed requests),
    # and the full offer.
    assert {s.get("transceivers") for s in nurse.samples if s.get("rows")} == {11}
    assert sum(1 for r in nurse.requests if r["path"].endswith("/ping")) == 3, nurse.requests

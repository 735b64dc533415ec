"""The pre-call check reads the call page's own loading before it sends timed requests, in
real Chromium behind the lab's link emulator.

On GPRS the check's three timed requests (one after another, each a round trip and an upload
through 20 kbps) had taken ~9 s between "Join the call" and the offer. The page's style sheet
and script already crossed the same link, and the time from sending each request to its first
byte is what a timed request measures: on a far link (450 ms each way) both read slow, so one
timed request more settles the verdict, and it travels alone (the page's first status poll
waits for the verdict, and its icon is in the page). On the LAN nothing changes: fast
answers, full offer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Lab, profiles
from harness.browsercall import BrowserSeat, run_browser_call

pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.netns, pytest.mark.browser, pytest.mark.timeout(180)]


def test_a_far_patient_offers_after_one_timed_request_and_the_lan_after_a_full_check(
    lab: Lab, tmp_path: Path
) -> None:
    far = profiles.custom("far", delay_ms=450)
    seats = [BrowserSeat("nurse", role="facilitator"), BrowserSeat("p1", link=far)]
    box = lab.host("box")
    hosts = {s.name: lab.host(s.name, link=s.link) for s in seats}
    run = run_browser_call(lab, box, hosts, seats, seconds=3, workdir=tmp_path)
    p1, nurse = run.participants["p1"], run.participants["nurse"]
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

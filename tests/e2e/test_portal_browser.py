"""The portal in real headless Chromium against a real `clinicbox serve`.

A clinician schedules a session; two patients join with the code, consent, wait and are
admitted; the call page's pre-call check finds the fake camera and microphone; a PHQ-9 is
scored right and a form with a missing answer stores nothing; unauthenticated, CSRF-less and
idle requests are refused. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.conftest import start_box
from tests.e2e.conftest import (
    ARGS,
    ARTIFACTS,
    CHROMIUM,
    PASSWORD,
    PHONE,
    add_user,
    all_labelled,
    fits_phone,
    patient_joins,
    shot,
    sign_in,
    starting_soon,
)

playwright_api = pytest.importorskip("playwright.sync_api")

expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.pages, pytest.mark.timeout(180)]

def _patient_joins_by_keyboard(browser, base: str, code: str, name: str):
    """The same path with the keyboard only: Tab, typing, Space and Enter."""
    context = browser.new_context(ignore_https_errors=True, viewport=PHONE)
    page = context.new_page()
    page.goto(base + "/join")
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")  # brand link
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "code"
    page.keyboard.type(code)
    page.keyboard.press("Tab")
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Before you join").wait_for()
    page.get_by_label("I understand and agree to join").focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/join/wait$"))
    return page


def test_clinic_scenario_in_chromium(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    box = start_box(data_dir, CLINICBOX_IDLE_LOGOFF_MINUTES="1")
    base = box.base_url
    try:
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            # A second clinician sign-in left alone: it must be logged out after one idle minute.
            idle = browser.new_context(ignore_https_errors=True)
            idle_page = sign_in(idle, base)
            idle_since = time.monotonic()

            clinician = browser.new_context(ignore_https_errors=True)
            doc = sign_in(clinician, base)
            doc.get_by_role("link", name="Schedule a group session").click()
            doc.get_by_label("Title").fill("Tuesday coping group")
            doc.get_by_label("Date and time").fill(starting_soon())
            doc.get_by_label("Capacity (people, including the facilitator)").fill("6")
            doc.get_by_label("Yes, store it encrypted with the session record").check()
            all_labelled(doc)
            doc.get_by_role("button", name="Schedule").click()
            code = doc.inner_text("#session-code").replace(" ", "")
            assert re.fullmatch(r"\d{9}", code)
            session_url = doc.url

            ana = patient_joins(browser, base, code, "Ana", shots=True)
            ben = _patient_joins_by_keyboard(browser, base, code, "Ben")
            doc.reload()
            all_labelled(doc)
            assert doc.get_by_role("button", name="Admit Ana").is_visible()
            doc.get_by_role("button", name="Admit Ana").click()
            shot(doc, "clinician-session")
            doc.get_by_role("button", name="Admit all (1)").click()
            assert "Nobody is waiting" in doc.inner_text("main")

            # The waiting page refreshes itself (no JavaScript needed) into the call page.
            for patient in (ana, ben):
                patient.wait_for_url(re.compile(r"/call$"), timeout=15_000)
                expect(patient.locator("#check-cam span")).to_have_text("working")
                expect(patient.locator("#check-mic span")).to_have_text("working")
                expect(patient.locator("#check-net span")).to_have_text(re.compile(r"\(\d+ ms\)"))
            fits_phone(ana)
            shot(ana, "call-precheck")

            # The facilitator sends a message and a quick poll; the call page picks them up
            # within its 10 s state refresh and answers the poll without leaving the call.
            doc.goto(session_url)
            doc.get_by_label(re.compile("^Message to everyone")).fill("Welcome, we start soon")
            doc.get_by_role("button", name="Send message").click()
            doc.get_by_label("Question").fill("How is your week?")
            doc.get_by_label("Answers, one per line (2 to 5)").fill("Good\nSo-so\nHard")
            doc.get_by_role("button", name="Start poll").click()
            expect(ana.locator("#facilitator-message")).to_contain_text("Welcome, we start soon",
                                                           timeout=25_000)
            ana.get_by_label("So-so").check()
            ana.locator("#poll").get_by_role("button", name="Answer").click()
            expect(ana.locator("#flash")).to_have_text("Thank you, your answer was sent.")
            assert ana.url.endswith("/call")
            shot(ana, "call-poll")
            doc.reload()
            assert "So-so: 1" in doc.inner_text("main")

            # PHQ-9 in the browser, once the clinician asked for it: a missing answer shows a
            # message and stores nothing.
            doc.get_by_role("button", name="Send PHQ-9").click()
            ana.goto(base + "/join/questionnaire/phq9")
            answers = [3, 2, 2, 1, 1, 1, 0, 0, 1]
            for number, value in enumerate(answers, start=1):
                if number != 4:
                    ana.check(f"input[name=q{number}][value='{value}']")
            ana.get_by_role("button", name="Send answers").click()
            assert "Please answer question 4. Nothing was saved." in ana.inner_text("[role=alert]")
            fits_phone(ana)
            shot(ana, "questionnaire-missing")
            # The other answers were kept on the page; only item 4 needs answering.
            assert ana.is_checked("input[name=q1][value='3']")
            ana.check("input[name=q4][value='1']")
            ana.get_by_role("button", name="Send answers").click()
            assert "Thank you" in ana.inner_text("h1")

            doc.goto(session_url)
            doc.get_by_role("link", name="Scores").first.click()
            page_text = doc.inner_text("main")
            assert "11 / 27" in page_text and "moderate" in page_text
            assert "risk: item 9" in page_text
            assert doc.locator("svg circle").count() == 1
            # After the session the clinician enters a follow-up PHQ-9 with the patient.
            doc.get_by_role("link", name="Enter a new PHQ-9 (mood)").click()
            for number, value in enumerate([1, 1, 1, 1, 0, 0, 1, 0, 0], start=1):
                doc.check(f"input[name=q{number}][value='{value}']")
            doc.get_by_role("button", name="Send answers").click()
            assert "5 / 27" in doc.inner_text("main")
            assert doc.locator("svg circle").count() == 2
            doc.set_viewport_size(PHONE)
            fits_phone(doc)
            shot(doc, "score-chart")

            # Unauthenticated request for a clinical page: sent to the login page.
            stranger = browser.new_context(ignore_https_errors=True)
            page = stranger.new_page()
            page.goto(base + "/patients/1")
            assert "/login?next=/patients/1" in page.url
            # A POST without the CSRF token is refused and changes nothing.
            reply = doc.request.post(base + "/sessions/new", form={
                "title": "forged", "starts_at": "2031-11-24T10:00", "facilitator": "1",
                "capacity": "4"})
            assert reply.status == 400
            doc.goto(base + "/dashboard")
            assert "forged" not in doc.inner_text("main")

            # The idle sign-in from the start is logged out once a minute has passed.
            time.sleep(max(0.0, 62 - (time.monotonic() - idle_since)))
            idle_page.goto(base + "/dashboard")
            # The cookie itself expires after the idle time, so the browser may drop it
            # before the box sees the request: either way the user is back at the login page.
            assert re.search(r"/login\?(reason=idle|next=/dashboard)$", idle_page.url)
            assert idle_page.get_by_role("heading", name="Staff sign in").is_visible()
            browser.close()
    finally:
        assert box.stop() == 0
        logs = box.log_text()
        for secret in ("Ana", "Ben", "Tuesday coping", PASSWORD):
            assert secret not in logs, f"{secret!r} leaked into the log"
    os.sync()

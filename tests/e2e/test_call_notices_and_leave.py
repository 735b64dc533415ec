"""In-call notices, indicators, Leave/Rejoin and End in real Chromium through the box's SFU.

As in test_call_sfu.py, the box and Chromium share a network namespace with only loopback.
The facilitator's message stays while "your answer was sent" comes and goes, until dismissed;
a raised hand is a badge and a line in the facilitator's list; someone muted is never shown
speaking; Leave asks first, and Rejoin returns the patient to the same seat (no consent, no
waiting room, no new record); End session asks first, and an ended session offers neither
Lock room nor Open the call. The patient uses a 390x844 phone viewport.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import patient_joins, scheduled_call
from tests.e2e.test_call_sfu import _me

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.timeout(170)]

PHONE_390 = {"width": 390, "height": 844}


def _join_call(page) -> str:
    page.get_by_role("button", name="Join the call").click()
    expect(page.locator("#room")).to_be_visible(timeout=20_000)
    return _me(page)


def test_notices_indicators_leave_rejoin_and_end(tmp_path: Path) -> None:
    with scheduled_call(tmp_path, "Notices call") as call:
        browser, context, doc, base = call.browser, call.context, call.doc, call.base
        code, session_url = call.code, call.session_url
        doc.get_by_role("button", name="Start session").click()
        ana = patient_joins(browser, base, code, "Ana", shots=False)
        ana.set_viewport_size(PHONE_390)
        doc.reload()
        doc.get_by_role("button", name="Admit Ana").click()
        ana.wait_for_url(re.compile(r"/call$"), timeout=15_000)
        ana_id = _join_call(ana)
        desk = context.new_page()
        desk.goto(session_url)
        desk.get_by_role("link", name="Open the call").click()
        _join_call(desk)

        # Notices: the facilitator's message stays while a transient one comes and goes.
        doc.goto(session_url)
        doc.get_by_label(re.compile("^Message to everyone")).fill("Tea break at 11")
        doc.get_by_role("button", name="Send message").click()
        doc.get_by_label("Question").fill("Ready?")
        doc.get_by_label("Answers, one per line (2 to 5)").fill("Yes\nNo")
        doc.get_by_role("button", name="Start poll").click()
        message = ana.locator("#facilitator-message")
        expect(message).to_contain_text("Tea break at 11", timeout=25_000)
        expect(ana.locator("#poll")).to_be_visible(timeout=25_000)
        ana.get_by_label("Yes").check()
        ana.locator("#poll").get_by_role("button", name="Answer").click()
        expect(ana.locator("#flash")).to_have_text("Thank you, your answer was sent.")
        expect(message).to_be_visible()
        expect(ana.locator("#flash")).to_be_hidden(timeout=10_000)
        time.sleep(1)
        expect(message).to_contain_text("Tea break at 11")
        message.get_by_role("button", name="Dismiss").click()
        expect(message).to_be_hidden()

        # A raised hand: a badge on the tile and a line in the facilitator's list.
        ana.get_by_role("button", name="Raise hand").click()
        ana_tile = desk.locator(f"[id='tile-{ana_id}']")
        expect(ana_tile.locator(".hand-badge")).to_have_text("\u270b Hand raised", timeout=10_000)
        expect(desk.locator("#hands li")).to_have_text(["Ana"])
        # Muted by the facilitator, Ana is never shown speaking (the box may keep her
        # as the last speaker while nobody else is louder).
        ana_tile.get_by_role("button", name="Mute").click()
        expect(ana_tile.locator("figcaption")).to_contain_text("(muted)", timeout=10_000)
        for _ in range(10):
            assert "(speaking)" not in ana_tile.locator("figcaption").inner_text()
            assert "speaking" not in (ana_tile.get_attribute("class") or "")
            time.sleep(0.3)

        # Leave asks first; Stay keeps the call; Rejoin returns to the same seat.
        ana.locator("#leave-btn").click()
        expect(ana.get_by_role("alertdialog")).to_contain_text("Leave the call?")
        ana.get_by_role("button", name="Stay in the call").click()
        expect(ana.locator("#room")).to_be_visible()
        assert ana.url.endswith("/call")
        ana.locator("#leave-btn").click()
        ana.get_by_role("button", name="Yes, leave").click()
        ana.wait_for_url(re.compile(r"/join/wait$"))
        ana.get_by_role("button", name="Rejoin the call").click()
        ana.wait_for_url(re.compile(r"/call$"))
        expect(ana.get_by_role("button", name="Join the call")).to_be_visible()
        doc.goto(session_url)
        people = doc.locator("#people li")
        expect(people).to_have_count(1)
        expect(people.first).to_have_attribute("data-status", "admitted")

        # The facilitator's Leave asks too, and End session is confirmed on its own page.
        desk.locator("#leave-btn").click()
        expect(desk.get_by_role("alertdialog")).to_be_visible()
        desk.get_by_role("button", name="Yes, leave").click()
        desk.wait_for_url(re.compile(re.escape(session_url) + "$"))
        assert doc.get_by_role("button", name="Lock room").is_visible()
        doc.get_by_role("button", name="End session…").click()
        expect(doc.get_by_role("heading", level=1)).to_contain_text("for everyone?")
        doc.get_by_role("link", name="No, keep it running").click()
        expect(doc.locator("#session-state")).to_have_text("live")
        doc.get_by_role("button", name="End session…").click()
        doc.get_by_role("button", name="Yes, end the session").click()
        expect(doc.locator("#session-state")).to_have_text("ended")
        expect(doc.get_by_role("button", name="Lock room")).to_have_count(0)
        expect(doc.get_by_role("link", name="Open the call")).to_have_count(0)
        # After the end there is no way back into the call.
        ana.goto(base + "/join/wait")
        expect(ana.get_by_role("button", name="Rejoin the call")).to_have_count(0)

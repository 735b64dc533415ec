"""The facilitator's call view marks the tile of a patient with an open risk flag.

A real `clinicbox serve` and Chromium in a network namespace with only loopback (as in
test_call_sfu.py): Ana answers PHQ-9 item 9 above zero, joins the call; the facilitator sees
"Needs follow-up" on Ana's tile and not on Ben's; Ana and Ben see no marker at all; once the
follow-up is recorded the marker goes. Desktop and a 390x844 phone viewport.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import patient_joins, scheduled_call
from tests.e2e.test_call_sfu import _me

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]


def test_facilitator_sees_the_risk_marker_on_the_patients_tile(tmp_path: Path) -> None:
    with scheduled_call(tmp_path, "Risk marker call") as call:
        browser, context, doc, base = call.browser, call.context, call.doc, call.base
        code, session_url = call.code, call.session_url
        doc.get_by_role("button", name="Send PHQ-9").click()
        doc.get_by_role("button", name="Start session").click()
        ana = patient_joins(browser, base, code, "Ana", shots=False)
        ben = patient_joins(browser, base, code, "Ben", shots=False)
        doc.reload()
        doc.get_by_role("button", name="Admit all (2)").click()
        ana.wait_for_url(re.compile(r"/call$"), timeout=15_000)
        ana.goto(base + "/join/questionnaire/phq9")
        for number in range(1, 10):
            ana.check(f"input[name=q{number}][value='1']")
        ana.get_by_role("button", name="Send answers").click()
        ana.goto(base + "/call")
        ids = {}
        for name, page in (("Ana", ana), ("Ben", ben)):
            page.wait_for_url(re.compile(r"/call$"), timeout=15_000)
            page.get_by_role("button", name="Join the call").click()
            expect(page.locator("#room")).to_be_visible(timeout=20_000)
            ids[name] = _me(page)
        doc.set_viewport_size({"width": 390, "height": 844})
        doc.goto(session_url)
        doc.get_by_role("link", name="Open the call").click()
        doc.get_by_role("button", name="Join the call").click()
        expect(doc.locator("#room")).to_be_visible(timeout=20_000)

        ana_tile = doc.locator(f"[id='tile-{ids['Ana']}']")
        ben_tile = doc.locator(f"[id='tile-{ids['Ben']}']")
        expect(ana_tile.locator(".risk-badge")).to_have_text("Needs follow-up", timeout=15_000)
        expect(ben_tile).to_be_visible()
        assert ben_tile.locator(".risk-badge").count() == 0
        for patient in (ana, ben):
            expect(
                patient.locator(f"[id='tile-{ids['Ben' if patient is ana else 'Ana']}']")
            ).to_be_visible()
            assert patient.locator(".risk-badge").count() == 0
            assert "Needs follow-up" not in patient.content()

        # Recorded in another tab: the marker goes within a check or two.
        desk = context.new_page()
        desk.goto(base + "/follow-up")
        desk.get_by_label("Followed up: safe for now, no referral").check()
        desk.get_by_label(re.compile("^Note for Ana")).fill("Spoke with Ana after the group.")
        desk.get_by_role("button", name="Record follow-up").click()
        expect(ana_tile.locator(".risk-badge")).to_have_count(0, timeout=15_000)

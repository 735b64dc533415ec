"""The call page in Arabic in real Chromium through the box's SFU: right to left, and call.js
shows its pre-call check, buttons, tile labels and the box's notices in the patient's language
(from the translated strings the page carries), while the facilitator's page stays English.

As in test_call_sfu.py, the box and Chromium share a network namespace with only loopback.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import patient_joins, scheduled_call
from tests.e2e.test_call_sfu import _me

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.timeout(170)]


def test_a_patient_calls_in_arabic(tmp_path: Path) -> None:
    with scheduled_call(tmp_path, "Arabic call") as call:
        browser, context, doc, base = call.browser, call.context, call.doc, call.base
        code, session_url = call.code, call.session_url
        doc.get_by_role("button", name="Start session").click()
        ana = patient_joins(browser, base, code, "Ana", shots=False)
        ana.context.add_cookies([{"name": "lang", "value": "ar", "url": base}])
        doc.reload()
        doc.get_by_role("button", name="Admit Ana").click()
        ana.wait_for_url(re.compile(r"/call$"), timeout=15_000)

        assert ana.locator("html").get_attribute("dir") == "rtl"
        # The pre-call check's verdicts come from call.js, in Arabic.
        expect(ana.locator("#check-mic span")).to_have_text("يعمل", timeout=15_000)
        expect(ana.locator("#check-net span")).to_contain_text("مللي ثانية", timeout=20_000)
        ana.get_by_role("button", name="انضم إلى المكالمة").click()
        expect(ana.locator("#room")).to_be_visible(timeout=20_000)
        ana_id = _me(ana)
        expect(ana.locator("#tile-self figcaption")).to_have_text("أنت")
        expect(ana.locator("#quality-text")).to_have_text(
            re.compile("^(جيد|مقبول|ضعيف)$"), timeout=10_000
        )
        mute = ana.locator("#mute-btn")
        expect(mute).to_have_text("كتم الصوت")
        mute.click()
        expect(mute).to_have_text("إلغاء كتم الصوت")
        mute.click()
        hand = ana.locator("#hand-btn")
        hand.click()
        expect(hand).to_have_text("أنزل يدك")
        expect(ana.locator("#tile-self .hand-badge")).to_have_text("\u270b يد مرفوعة")

        # The facilitator's call page stays English; what the box tells Ana is Arabic.
        desk = context.new_page()
        desk.goto(session_url + "/call")
        assert desk.locator("html").get_attribute("dir") == "ltr"
        desk.get_by_role("button", name="Join the call").click()
        expect(desk.locator("#room")).to_be_visible(timeout=20_000)
        ana_tile = desk.locator(f"[id='tile-{ana_id}']")
        ana_tile.get_by_role("button", name="Mute").click()
        expect(ana.locator("#notice")).to_have_text(
            "كتم الميسّر الميكروفون الخاص بك.", timeout=10_000
        )
        expect(ana.locator("#mute-btn")).to_have_text("إلغاء كتم الصوت")

"""The staff admin page in real headless Chromium (issue #20 item 9): an admin adds a
clinician, is told which field to fix, disables the account (its open session ends at once),
resets its password; on a desktop and a 390x844 phone, with no serious or critical axe-core
violation, and closed to clinicians."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import start_box
from tests.e2e.conftest import ARGS, CHROMIUM, PASSWORD, add_user, shot
from tests.e2e.test_accessibility import serious_violations

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.pages, pytest.mark.timeout(240)]

DESKTOP = {"width": 1280, "height": 800}
PHONE_390 = {"width": 390, "height": 844}
BEA_PASSWORD = "lantern orchard pebble"


def _sign_in(browser, base: str, username: str, password: str = PASSWORD):
    context = browser.new_context(ignore_https_errors=True, viewport=DESKTOP, bypass_csp=True)
    page = context.new_page()
    page.goto(base + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    return page


def test_admin_manages_staff_in_the_portal(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "admin.ann", "admin")
    add_user(data_dir, "dr.ada", "clinician")
    box = start_box(data_dir)
    found: list[str] = []
    try:
        base = box.base_url
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            ada = _sign_in(browser, base, "dr.ada")
            assert ada.get_by_role("link", name="Staff").count() == 0
            reply = ada.goto(base + "/staff")
            assert reply is not None and reply.status == 403

            ann = _sign_in(browser, base, "admin.ann")
            ann.get_by_role("link", name="Staff").click()
            expect(ann.get_by_role("heading", level=1)).to_have_text("Staff accounts")
            ann.get_by_label("Username").fill("dr.bea")
            ann.get_by_label("Role", exact=True).select_option("clinician")
            ann.get_by_label("First password").fill("too short")
            ann.get_by_role("button", name="Add account").click()
            expect(ann.get_by_role("alert")).to_have_text(
                re.compile(r"^Password: Password must be at least 12 characters long")
            )
            expect(ann.get_by_label("Username")).to_have_value("dr.bea")
            expect(ann.get_by_label("First password")).to_have_value("")
            ann.get_by_label("First password").fill(BEA_PASSWORD)
            ann.get_by_role("button", name="Add account").click()
            expect(ann.get_by_role("status")).to_have_text("Added dr.bea (clinician).")

            bea = _sign_in(browser, base, "dr.bea", BEA_PASSWORD)
            for viewport in (DESKTOP, PHONE_390):
                ann.set_viewport_size(viewport)
                ann.reload()
                ann.locator("summary", has_text="dr.bea").click()
                wide = ann.evaluate("() => document.documentElement.scrollWidth")
                assert wide <= viewport["width"], f"/staff is {wide} px wide"
                found += serious_violations(ann)
            shot(ann, "staff")
            ann.get_by_role("button", name="Disable dr.bea").click()
            expect(ann.get_by_role("status")).to_have_text(
                "dr.bea is disabled. Signed out of 1 open session(s)."
            )
            expect(ann.locator("tr", has_text="dr.bea")).to_contain_text("disabled")
            bea.goto(base + "/dashboard")
            bea.wait_for_url(re.compile(r"/login"))

            ann.locator("summary", has_text="dr.bea").click()
            ann.get_by_role("button", name="Enable dr.bea").click()
            ann.locator("summary", has_text="dr.bea").click()
            ann.get_by_label("New password for dr.bea").fill("river candle stone thistle")
            ann.get_by_role("button", name="Set password for dr.bea").click()
            expect(ann.get_by_role("status")).to_have_text(
                "New password set for dr.bea; give it to them in person."
            )
            _sign_in(browser, base, "dr.bea", "river candle stone thistle")
            browser.close()
    finally:
        box.stop()
    assert found == [], "\n".join(found)

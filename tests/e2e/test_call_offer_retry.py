"""A call offer lost on the way is sent again, in real Chromium through the box's SFU.

On GPRS a patient's offer upload could stall until the connection dropped with no answer at
all; the page then said "Could not join the call" and the patient never got in. Here the
first offer request is reset on its way (Playwright's request routing: the network fault,
nothing else stands in) and the page must join on its next offer. An offer the box answers
with a reason stays final: that is the answer the patient sees.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    add_user,
    chromium_in,
    loopback_namespace,
    patient_joins,
    sign_in,
    start_box_in,
    starting_soon,
    wait_healthy,
)
from tests.e2e.test_call_sfu import CALL_ARGS, _me

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]


def test_an_offer_lost_on_the_way_is_sent_again_and_the_patient_joins(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    with loopback_namespace() as namespace:
        box = start_box_in(namespace, data_dir, CLINICBOX_MEDIA_ADDRESSES="127.0.0.1")
        try:
            with playwright_api.sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=chromium_in(namespace, tmp_path), args=CALL_ARGS
                )
                context = browser.new_context(ignore_https_errors=True)
                wait_healthy(context.new_page(), box)
                base = box.base_url
                doc = sign_in(context, base)
                doc.goto(base + "/sessions/new")
                doc.get_by_label("Title").fill("Retry call")
                doc.get_by_label("Date and time").fill(starting_soon())
                doc.get_by_role("button", name="Schedule").click()
                code = doc.inner_text("#session-code").replace(" ", "")
                doc.get_by_role("button", name="Start session").click()
                ana = patient_joins(browser, base, code, "Ana", shots=False)
                doc.reload()
                doc.get_by_role("button", name="Admit Ana").click()
                ana.wait_for_url(re.compile(r"/call$"), timeout=15_000)

                offers: list[str] = []

                def lose_the_first(route) -> None:
                    offers.append(route.request.method)
                    if len(offers) == 1:
                        route.abort("connectionreset")
                    else:
                        route.continue_()

                ana.route("**/api/media/offer", lose_the_first)
                expect(ana.locator("#check-cam span")).to_have_text("working", timeout=20_000)
                ana.get_by_role("button", name="Join the call").click()
                expect(ana.locator("#room")).to_be_visible(timeout=30_000)
                assert _me(ana).startswith("attendance/")
                assert offers == ["POST", "POST"], offers
                expect(ana.locator("#notice")).to_be_hidden()
                browser.close()
        finally:
            box.stop()

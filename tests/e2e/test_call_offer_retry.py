"""A call offer lost on the way is sent again, in real Chromium through the box's SFU.

On GPRS a patient's offer upload could stall until the connection dropped with no answer at
all; the page then said "Could not join the call" and the patient never got in. Here the
first offer request is reset on its way (Playwright's request routing: the network fault,
nothing else stands in) and the page must join on its next offer. An offer the box answers
with a reason stays final: that is the answer the patient sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import scheduled_call
from tests.e2e.test_call_sfu import _me

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]


def test_an_offer_lost_on_the_way_is_sent_again_and_the_patient_joins(tmp_path: Path) -> None:
    with scheduled_call(tmp_path, "Retry call") as call:
        ana = call.start_and_admit("Ana")

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

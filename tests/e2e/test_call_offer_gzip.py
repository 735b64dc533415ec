"""The call page sends its SDP offer gzipped, and the box answers it, in real Chromium.

On GPRS (20 kbps up) the offer's upload was the largest part of a patient's join: ~14 KB of
SDP that repeats itself m-line after m-line took 5-20 s. Gzipped it is a tenth of that. Here
the patient's offer request is read on its way (Playwright's request events, nothing stands
in for the box): its body must be gzip, far smaller than the SDP it carries, and the box must
answer it so the patient joins.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.e2e.conftest import scheduled_call
from tests.e2e.test_call_sfu import _me

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]


def test_the_offer_travels_gzipped_and_the_patient_joins(tmp_path: Path) -> None:
    with scheduled_call(tmp_path, "Gzip call") as call:
        ana = call.start_and_admit("Ana")

        offers: list[tuple[dict[str, str], bytes]] = []
        ana.on(
            "request",
            lambda r: (
                offers.append((r.headers, r.post_data_buffer or b""))
                if r.url.endswith("/api/media/offer")
                else None
            ),
        )
        expect(ana.locator("#check-cam span")).to_have_text("working", timeout=20_000)
        ana.get_by_role("button", name="Join the call").click()
        expect(ana.locator("#room")).to_be_visible(timeout=30_000)
        assert _me(ana).startswith("attendance/")

        assert len(offers) == 1, len(offers)
        headers, body = offers[0]
        assert headers.get("content-encoding") == "gzip", headers
        assert body[:2] == b"\x1f\x8b", body[:40]
        sent = json.loads(gzip.decompress(body))
        assert sent["type"] == "offer" and sent["sdp"].startswith("v=0")
        # The whole body is smaller than a third of the SDP it carries (measured: ~1.3 KB
        # for ~6-12 KB of SDP).
        assert len(body) * 3 < len(sent["sdp"]), (len(body), len(sent["sdp"]))
        expect(ana.locator("#notice")).to_be_hidden()

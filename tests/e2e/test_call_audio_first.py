"""A patient hears the call before the box's slot map arrives.

Which receive slot shows whom comes over the call's data channel; on a lossy link through
TURN its SCTP handshake can take many seconds (or the messages arrive late). The call page
must play every audio slot as its track arrives, not wait for the map: here the patient's
page never gets any data-channel message at all (an init script swallows them) and must
still receive and play the clinician's voice. Real `clinicbox serve` and headless Chromium
in a loopback-only namespace.
"""

from __future__ import annotations

import re
import time
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
from tests.e2e.test_call_sfu import CALL_ARGS

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

# The page's data channel never delivers a message (as if SCTP had not got through yet).
NO_CHANNEL_MESSAGES = """(() => {
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    Object.defineProperty(channel, "onmessage", { set() {}, get() { return null; } });
    channel.addEventListener = function () {};
    return channel;
  };
})();"""

# Audio samples played out by the page's receive slots, and whether the box's welcome came.
PLAYED_JS = """async () => {
  const report = await window.ClinicBoxCall.stats();
  let samples = 0, packets = 0;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      samples += s.totalSamplesReceived || 0; packets += s.packetsReceived || 0;
    }
  });
  return {samples, packets, me: window.ClinicBoxCall.slots().me};
}"""


def test_a_patient_hears_the_call_before_the_slot_map_arrives(tmp_path: Path) -> None:
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
                doc = sign_in(context, box.base_url)
                doc.goto(box.base_url + "/sessions/new")
                doc.get_by_label("Title").fill("Audio first")
                doc.get_by_label("Date and time").fill(starting_soon())
                doc.get_by_role("button", name="Schedule").click()
                code = doc.inner_text("#session-code").replace(" ", "")
                doc.get_by_role("button", name="Start session").click()

                ana = patient_joins(browser, box.base_url, code, "Ana", shots=False)
                ana.context.add_init_script(NO_CHANNEL_MESSAGES)
                doc.reload()
                doc.get_by_role("button", name="Admit all (1)").click()
                ana.wait_for_url(re.compile(r"/call$"), timeout=15_000)
                expect(ana.locator("#check-cam span")).to_have_text("working")
                ana.get_by_role("button", name="Join the call").click()
                expect(ana.locator("#room")).to_be_visible(timeout=20_000)
                doc.get_by_role("link", name="Open the call").click()
                expect(doc.locator("#check-cam span")).to_have_text("working")
                doc.get_by_role("button", name="Join the call").click()
                expect(doc.locator("#room")).to_be_visible(timeout=20_000)

                played: dict = {}
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    played = ana.evaluate(PLAYED_JS)
                    if played["samples"] > 16_000:
                        break
                    time.sleep(0.5)
                assert played["me"] is None, "the box's messages were meant to be swallowed"
                assert played["packets"] > 0, f"no audio reached the page at all: {played}"
                assert played["samples"] > 16_000, f"audio arrived but was not played: {played}"
                browser.close()
        finally:
            box.stop()

"""The browser call client (web/static/call.js) in headless Chromium, against a loopback peer.

The box's SFU answers `/api/media/offer` once it is installed. This test checks the client on
its own: the page's offer goes (through Playwright's request routing) to a real aiortc peer
in this process that sends the patient's camera and microphone back and echoes chat on the
data channel. It proves that the client negotiates, renders remote video
(`framesDecoded` grows), plays remote audio (`totalSamplesReceived` grows), carries chat,
and that Mute silences what the others receive.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from tests.conftest import start_box
from tests.e2e.conftest import ARGS, CHROMIUM, PHONE, add_user, patient_joins, shot, sign_in

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

# Host candidates as plain addresses (not mDNS names) so the aiortc peer can reach them.
CALL_ARGS = [*ARGS, "--disable-features=WebRtcHideLocalIpsWithMdns"]

STATS_JS = """async () => {
  const report = await window.ClinicBoxCall.stats();
  const out = {frames: 0, samples: 0, energy: 0};
  if (!report) { return out; }
  report.forEach((s) => {
    if (s.type !== "inbound-rtp") { return; }
    if (s.kind === "video") { out.frames += s.framesDecoded || 0; }
    if (s.kind === "audio") {
      out.samples += s.totalSamplesReceived || 0; out.energy += s.totalAudioEnergy || 0;
    }
  });
  return out;
}"""


class LoopbackPeer:
    """An aiortc peer on its own loop thread: returns each track it receives, echoes chat."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.peers: list[RTCPeerConnection] = []
        self.relay = MediaRelay()
        self.events: list[dict] = []

    async def _answer(self, offer: dict[str, str]) -> dict[str, str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.append(pc)

        @pc.on("track")
        def on_track(track: object) -> None:
            pc.addTrack(self.relay.subscribe(track))

        @pc.on("datachannel")
        def on_channel(channel: object) -> None:
            @channel.on("message")
            def on_message(message: str) -> None:
                event = json.loads(message)
                self.events.append(event)
                if event.get("type") == "chat":
                    channel.send(json.dumps({"type": "chat", "from": "Echo",
                                             "text": event["text"]}))

        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    def answer(self, offer: dict[str, str]) -> dict[str, str]:
        return asyncio.run_coroutine_threadsafe(self._answer(offer), self.loop).result(20)

    def close(self) -> None:
        async def _close() -> None:
            for pc in self.peers:
                await pc.close()

        asyncio.run_coroutine_threadsafe(_close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _grows(page, key: str, seconds: float = 2.0) -> float:
    before = page.evaluate(STATS_JS)[key]
    time.sleep(seconds)
    return page.evaluate(STATS_JS)[key] - before


def test_call_client_media_chat_and_mute(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    box = start_box(data_dir)
    peer = LoopbackPeer()
    offers: list[dict] = []
    try:
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CALL_ARGS)
            doc = sign_in(browser.new_context(ignore_https_errors=True), box.base_url)
            doc.goto(box.base_url + "/sessions/new")
            doc.get_by_label("Title").fill("Client check")
            doc.get_by_label("Date and time").fill("2026-11-24T10:00")
            doc.get_by_role("button", name="Schedule").click()
            code = doc.inner_text("#session-code").replace(" ", "")
            ana = patient_joins(browser, box.base_url, code, "Ana", shots=False)

            def give_token(route) -> None:
                # Stands in for the SFU's join token, which the box adds once it has an SFU.
                page = route.fetch()
                body = page.text().replace('data-token=""', 'data-token="loopback-test"')
                route.fulfill(response=page, body=body)

            def answer(route) -> None:
                offer = route.request.post_data_json
                offers.append(offer)
                route.fulfill(status=200, content_type="application/json",
                              body=json.dumps(peer.answer(offer)))

            ana.route(re.compile(r".*/call$"), give_token)
            ana.route("**/api/media/offer", answer)
            doc.reload()
            doc.get_by_role("button", name="Admit all (1)").click()
            ana.wait_for_url(re.compile(r"/call$"), timeout=15_000)
            # The waiting page reached /call through a redirect, which routing does not see.
            ana.goto(box.base_url + "/call")
            expect(ana.locator("#check-cam span")).to_have_text("working")
            ana.get_by_role("button", name="Join the call").click()
            expect(ana.locator("#room")).to_be_visible(timeout=20_000)
            assert offers and offers[0]["token"] == "loopback-test"
            assert "a=candidate" in offers[0]["sdp"]  # gathered before sending (no trickle)

            # Your own picture plus the one remote tile.
            expect(ana.locator("#tiles video")).to_have_count(2, timeout=10_000)
            deadline = time.monotonic() + 20
            while ana.evaluate(STATS_JS)["frames"] < 10 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _grows(ana, "frames") > 5, "remote video is not being decoded"
            assert _grows(ana, "samples") > 16_000, "remote audio is not being received"
            loud = _grows(ana, "energy")
            assert loud > 0

            ana.get_by_label("Message").fill("hello from Ana")
            ana.get_by_role("button", name="Send").click()
            expect(ana.locator("#chat-log")).to_contain_text("Echo: hello from Ana")
            expect(ana.locator("#quality-text")).to_have_text(re.compile("good|fair|weak"))
            ana.set_viewport_size(PHONE)
            shot(ana, "call-view")

            ana.get_by_role("button", name="Mute").click()
            expect(ana.get_by_role("button", name="Unmute")).to_have_attribute(
                "aria-pressed", "true")
            time.sleep(1.0)  # let audio already in flight drain
            quiet = _grows(ana, "energy")
            assert _grows(ana, "samples") > 0, "muting must not stop the audio stream itself"
            assert quiet < loud / 20, f"muted audio still carries energy ({quiet} vs {loud})"
            browser.close()
    finally:
        peer.close()
        box.stop()


def _received(peer: LoopbackPeer, event: dict, timeout: float = 10.0) -> bool:
    """True once the peer got `event` over the data channel (it arrives asynchronously)."""
    deadline = time.monotonic() + timeout
    while event not in peer.events and time.monotonic() < deadline:
        time.sleep(0.1)
    return event in peer.events


def _route_call(page, pattern: str, peer: LoopbackPeer) -> None:
    """Give the call page a join token and answer its offer with the loopback peer."""

    def give_token(route) -> None:
        page_response = route.fetch()
        body = page_response.text().replace('data-token=""', 'data-token="loopback-test"')
        route.fulfill(response=page_response, body=body)

    def answer(route) -> None:
        route.fulfill(status=200, content_type="application/json",
                      body=json.dumps(peer.answer(route.request.post_data_json)))

    page.route(re.compile(pattern), give_token)
    page.route("**/api/media/offer", answer)


def test_facilitator_controls_lock_and_screen_share(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    box = start_box(data_dir)
    peer = LoopbackPeer()
    try:
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                *CALL_ARGS, "--auto-select-desktop-capture-source=Entire screen"])
            doc = sign_in(browser.new_context(ignore_https_errors=True), box.base_url)
            doc.goto(box.base_url + "/sessions/new")
            doc.get_by_label("Title").fill("Facilitator check")
            doc.get_by_label("Date and time").fill("2026-11-24T10:00")
            doc.get_by_role("button", name="Schedule").click()
            session_url = doc.url
            code = doc.inner_text("#session-code").replace(" ", "")
            _route_call(doc, r".*/call$", peer)
            doc.get_by_role("link", name="Open the call").click()
            expect(doc.locator("#check-cam span")).to_have_text("working")
            doc.get_by_role("button", name="Join the call").click()
            expect(doc.locator("#room")).to_be_visible(timeout=20_000)
            remote = doc.locator("#tiles figure:not(#tile-self)")
            expect(remote).to_have_count(1, timeout=20_000)
            stream_id = remote.get_attribute("id").removeprefix("tile-")

            remote.get_by_role("button", name="Mute").click()
            remote.get_by_role("button", name="Pin for everyone").click()
            assert _received(peer, {"type": "mute", "participant": stream_id})
            assert _received(peer, {"type": "pin", "participant": stream_id})

            doc.get_by_role("button", name="Lock room").click()
            expect(doc.locator("#notice")).to_have_text(
                "The room is locked: nobody new can join.")
            assert _received(peer, {"type": "lock", "locked": True})
            # The portal enforces the lock: a patient with the right code is turned away.
            patient = browser.new_context(ignore_https_errors=True).new_page()
            patient.goto(box.base_url + "/join")
            patient.get_by_label("Session code (6 digits)").fill(code)
            patient.get_by_label("Your name as others will see it").fill("Late")
            patient.get_by_role("button", name="Continue").click()
            patient.get_by_label("I understand and agree to join").check()
            patient.get_by_role("button", name="Join the waiting room").click()
            assert "locked this session" in patient.inner_text("[role=alert]")

            doc.get_by_role("button", name="Share screen").click()
            expect(doc.get_by_role("button", name="Sharing screen")).to_be_visible()
            assert _received(peer, {"type": "pin", "participant": "me", "screen": True})
            frames = doc.evaluate("""async () => {
              const report = await window.ClinicBoxCall.stats();
              let frames = 0;
              report.forEach((s) => { if (s.type === "outbound-rtp" && s.kind === "video") {
                frames += s.framesEncoded || 0; } });
              return frames; }""")
            assert frames > 0
            shot(doc, "call-facilitator")
            doc.goto(session_url)
            assert "locked" in doc.inner_text("main")
            browser.close()
    finally:
        peer.close()
        box.stop()

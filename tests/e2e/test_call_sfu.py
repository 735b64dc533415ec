"""A real group call in headless Chromium through the box's own SFU, media on loopback only.

A real `clinicbox serve` and one Chromium with fake camera and microphone, both in a network
namespace that has only loopback: a clinician schedules and starts a session; two patients
join by code, consent, are admitted and join the call; the clinician joins as facilitator.
Every browser decodes the others' video and receives their audio through its receive slots;
a chat message reaches the other patient; the facilitator's Mute stops that patient's audio
at the other patient (the slot showing her receives no packets) and Unmute restores it; a
patient's own Mute silences him at the others and marks his tile muted for them; breakout
rooms from the portal split the media (two patients in different rooms receive no audio at
all, the facilitator can join a room, bringing everyone back restores it); the facilitator's
screen share (a replaced
track, no renegotiation) reaches a patient pinned first; Lock turns a late patient away;
Audio only empties a patient's video slots at the box; Remove ends a patient's call and
takes his tile off the others' screens and un-admits him (his call page sends him back to the
waiting page).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    ARGS,
    PHONE,
    add_user,
    chromium_in,
    loopback_namespace,
    patient_joins,
    shot,
    sign_in,
    start_box_in,
    starting_soon,
    wait_healthy,
)

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

CALL_ARGS = [*ARGS, "--allow-loopback-in-peer-connection",
             "--autoplay-policy=no-user-gesture-required",
             "--auto-select-desktop-capture-source=Entire screen",
             # Host candidates as plain addresses, not mDNS names the box cannot resolve.
             "--disable-features=WebRtcHideLocalIpsWithMdns"]

# Inbound media per participant, through the slot map the box sent (mid -> participant).
STATS_JS = """async () => {
  const report = await window.ClinicBoxCall.stats();
  const slots = window.ClinicBoxCall.slots();
  const out = {};
  report.forEach((s) => {
    if (s.type !== "inbound-rtp" || s.mid === undefined) { return; }
    const who = (s.kind === "video" ? slots.video : slots.audio)[s.mid];
    if (!who) { return; }
    const row = out[who] || (out[who] = {frames: 0, samples: 0, packets: 0, energy: 0, width: 0});
    if (s.kind === "video") { row.frames += s.framesDecoded || 0; row.width = s.frameWidth || 0; }
    else {
      row.samples += s.totalSamplesReceived || 0; row.packets += s.packetsReceived || 0;
      row.energy += s.totalAudioEnergy || 0;
    }
  });
  return {me: slots.me, by: out};
}"""


PAIR_JS = """async () => {
  const report = await window.ClinicBoxCall.stats();
  const byId = {};
  report.forEach((s) => { byId[s.id] = s; });
  const out = [];
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = byId[s.selectedCandidatePairId];
      out.push(byId[pair.localCandidateId].address, byId[pair.remoteCandidateId].address);
    }
  });
  return out;
}"""


AUDIO_PACKETS_JS = """async () => {
  const report = await window.ClinicBoxCall.stats();
  let packets = 0;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") { packets += s.packetsReceived || 0; }
  });
  return packets;
}"""

# Bytes this page's camera sender has sent so far.
VIDEO_SENT_JS = """async () => {
  const report = await window.ClinicBoxCall.stats();
  let bytes = 0;
  report.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") { bytes += s.bytesSent || 0; }
  });
  return bytes;
}"""

# Every audio slot the box sent this page is empty (nobody to hear in its room).
ALONE_JS = """() => Object.values(window.ClinicBoxCall.slots().audio)
  .every((who) => who === null)"""



def _caption(text: str) -> re.Pattern[str]:
    """A tile caption: the text, and " (speaking)" too while that person is the speaker."""
    return re.compile("^" + re.escape(text) + r"( \(speaking\))?\s*$")

def _audio_packets(page, seconds: float = 2.0) -> int:
    """Audio packets this page receives, over `seconds`, from anyone."""
    before = page.evaluate(AUDIO_PACKETS_JS)
    time.sleep(seconds)
    return page.evaluate(AUDIO_PACKETS_JS) - before


def _inbound(page) -> dict[str, dict[str, float]]:
    return page.evaluate(STATS_JS)["by"]


def _growth(page, seconds: float = 2.0) -> dict[str, dict[str, float]]:
    before = _inbound(page)
    time.sleep(seconds)
    after = _inbound(page)
    return {
        who: {k: v - before.get(who, {}).get(k, 0) for k, v in row.items()}
        for who, row in after.items()
    }


def _me(page) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        me = page.evaluate("() => window.ClinicBoxCall.slots().me")
        if me:
            return me
        time.sleep(0.2)
    raise AssertionError("no welcome event from the box")


def _until_everyone(page, others: list[str], timeout: float = 30.0) -> None:
    """Wait until `page` decodes video and receives audio from each of `others`."""
    deadline = time.monotonic() + timeout
    seen: dict = {}
    while time.monotonic() < deadline:
        seen = _inbound(page)
        if all(seen.get(o, {}).get("frames", 0) > 5 and seen.get(o, {}).get("samples", 0) > 0
               for o in others):
            return
        time.sleep(0.5)
    raise AssertionError(f"media from {others} not received in time: {seen}")


def test_group_call_through_the_box_sfu(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    with loopback_namespace() as namespace:
        _call(tmp_path, data_dir, namespace)


def _call(tmp_path: Path, data_dir: Path, namespace: str) -> None:
    # The box and Chromium share a namespace that has only loopback: the box offers
    # 127.0.0.1 (its own setting), Chromium may use loopback (its switch), nothing else exists.
    # DEBUG: the secrets check below then covers the media plan lines too, and a failure
    # leaves them in box.log beside the data dir.
    box = start_box_in(namespace, data_dir, CLINICBOX_MEDIA_ADDRESSES="127.0.0.1",
                       CLINICBOX_LOG_LEVEL="DEBUG")
    try:
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_in(namespace, tmp_path),
                                         args=CALL_ARGS)
            context = browser.new_context(ignore_https_errors=True)
            wait_healthy(context.new_page(), box)
            doc = sign_in(context, box.base_url)
            doc.goto(box.base_url + "/sessions/new")
            doc.get_by_label("Title").fill("Real call")
            doc.get_by_label("Date and time").fill(starting_soon())
            doc.get_by_role("button", name="Schedule").click()
            code = doc.inner_text("#session-code").replace(" ", "")
            doc.get_by_role("button", name="Start session").click()

            ana = patient_joins(browser, box.base_url, code, "Ana", shots=False)
            ben = patient_joins(browser, box.base_url, code, "Ben", shots=False)
            doc.reload()
            doc.get_by_role("button", name="Admit all (2)").click()
            ids = {}
            for name, page in (("Ana", ana), ("Ben", ben)):
                page.wait_for_url(re.compile(r"/call$"), timeout=15_000)
                expect(page.locator("#check-cam span")).to_have_text("working")
                page.get_by_role("button", name="Join the call").click()
                expect(page.locator("#room")).to_be_visible(timeout=20_000)
                ids[name] = _me(page)
            # One slow answer in the pre-call check (EDGE read 673, 2,642 and 667 ms on one
            # link) does not put the facilitator on audio only: the median of five decides.
            slow = {"left": 1}

            def first_check_slow(route: Any) -> None:
                if slow["left"]:
                    slow["left"] -= 1
                    time.sleep(2.6)
                route.continue_()

            doc.route("**/join/ping", first_check_slow)
            doc.get_by_role("link", name="Open the call").click()
            expect(doc.locator("#check-cam span")).to_have_text("working")
            expect(doc.locator("#check-net span")).to_have_text(
                re.compile(r"^(good|fair) \("), timeout=15_000)
            assert not doc.locator("#start-audio-only").is_checked()
            assert slow["left"] == 0, "the slow answer was not asked for"
            doc.unroute("**/healthz")
            doc.get_by_role("button", name="Join the call").click()
            expect(doc.locator("#room")).to_be_visible(timeout=20_000)
            ids["doc"] = _me(doc)

            # Everyone decodes everyone else's video and receives their audio.
            for name, page in (("Ana", ana), ("Ben", ben), ("doc", doc)):
                _until_everyone(page, [ids[o] for o in ids if o != name])
                assert page.evaluate(PAIR_JS) == ["127.0.0.1", "127.0.0.1"]
            growth = _growth(ana)
            assert growth[ids["Ben"]]["frames"] > 5, "Ben's video is not decoded at Ana"
            assert growth[ids["Ben"]]["samples"] > 16_000, "Ben's audio is not heard at Ana"
            # Tiles are named from the box's events: yourself plus the two others.
            expect(ana.locator("#tiles figure")).to_have_count(3)
            expect(ana.locator(f"[id='tile-{ids['Ben']}'] figcaption")).to_have_text(
                _caption("Ben"))
            expect(ana.locator(f"[id='tile-{ids['doc']}'] figcaption")).to_have_text(
                _caption("dr.ada"))

            ana.get_by_label("Message").fill("hello from Ana")
            ana.get_by_role("button", name="Send").click()
            expect(ben.locator("#chat-log")).to_contain_text("Ana: hello from Ana")
            expect(ben.locator("#quality-text")).to_have_text(re.compile("good|fair|weak"))
            ben.set_viewport_size(PHONE)
            shot(ben, "call-view")

            # The facilitator mutes Ana: the box stops forwarding her audio; Ben's slot showing
            # her stops receiving packets while Ben keeps getting the facilitator's audio.
            tile = doc.locator(f"[id='tile-{ids['Ana']}']")
            tile.get_by_role("button", name="Mute").click()
            expect(ana.get_by_role("button", name="Unmute")).to_have_attribute(
                "aria-pressed", "true", timeout=10_000)
            expect(ana.locator("#notice")).to_have_text("The facilitator muted your microphone.")
            expect(ben.locator(f"[id='tile-{ids['Ana']}'] figcaption")).to_have_text(
                _caption("Ana (muted)"))
            time.sleep(0.5)  # packets already in flight
            growth = _growth(ben)
            assert growth.get(ids["Ana"], {}).get("packets", 0) == 0, growth
            assert growth[ids["doc"]]["packets"] > 20, "the others' audio must keep flowing"
            doc.set_viewport_size({"width": 900, "height": 700})
            # Three people, three tiles (a slot showing the box's mixed voices is no tile).
            expect(doc.locator("#tiles figure")).to_have_count(3)
            shot(doc, "call-facilitator")
            # The same button lets her speak again.
            tile.get_by_role("button", name="Unmute (Ana)").click()
            expect(ana.get_by_role("button", name="Mute")).to_have_attribute(
                "aria-pressed", "false", timeout=10_000)
            expect(ben.locator(f"[id='tile-{ids['Ana']}'] figcaption")).to_have_text(
                _caption("Ana"))
            time.sleep(0.5)
            assert _growth(ben)[ids["Ana"]]["packets"] > 20, "unmuted audio must flow again"

            # Ben mutes himself: his microphone track is disabled, the others hear silence.
            loud = _growth(doc)[ids["Ben"]]["energy"]
            ben.get_by_role("button", name="Mute").click()
            time.sleep(1.0)
            quiet = _growth(doc)[ids["Ben"]]["energy"]
            assert loud > 0 and quiet < loud / 20, f"muted Ben still loud ({quiet} vs {loud})"
            # ... and the others see that he muted himself.
            for page in (doc, ana):
                expect(page.locator(f"[id='tile-{ids['Ben']}'] figcaption")).to_have_text(
                    _caption("Ben (muted)"))
            # The active speaker's tile: an outline (not colour alone) and a spoken cue.
            outline = ana.evaluate("""(id) => {
                const t = document.getElementById("tile-" + id);
                t.classList.add("speaking");
                const css = getComputedStyle(t.querySelector("video"));
                const out = [css.outlineStyle, css.outlineWidth];
                t.classList.remove("speaking");
                return out;
            }""", ids["Ben"])
            assert outline == ["solid", "4px"], outline

            # Breakout rooms from the portal: Ana in room 1, Ben in room 2, the facilitator in
            # the main room; each is alone, so the box sends none of them any audio.
            portal = context.new_page()
            portal.goto(doc.url.rsplit("/call", 1)[0])
            portal.get_by_label("Number of rooms").fill("2")
            portal.get_by_role("button", name="Split into rooms").click()
            expect(ana.locator("#room-note")).to_have_text("You are in breakout room 1.")
            expect(ben.locator("#room-note")).to_have_text("You are in breakout room 2.")
            for page in (ana, ben, doc):
                page.wait_for_function(ALONE_JS, timeout=10_000)
            time.sleep(0.5)  # packets already in flight
            assert _audio_packets(ana) == 0, "Ana still receives audio in her own room"
            assert _audio_packets(ben) == 0, "Ben still receives audio in his own room"
            # The facilitator joins Ben's room: they hear each other, Ana hears nobody.
            portal.get_by_label("Join in the call").select_option("2")
            portal.get_by_role("button", name="Join", exact=True).click()
            expect(doc.locator("#room-note")).to_have_text("You are in breakout room 2.")
            ben.wait_for_function(f"""() => Object.values(window.ClinicBoxCall.slots().audio)
                .includes("{ids['doc']}")""", timeout=10_000)
            assert _growth(ben)[ids["doc"]]["packets"] > 20, "Ben must hear the facilitator"
            assert _audio_packets(ana, 1.0) == 0
            shot(portal, "breakout-portal")
            portal.get_by_role("button", name="Bring everyone back").click()
            expect(doc.locator("#room-note")).to_have_text("You are back in the main room.")
            ana.wait_for_function(f"""() => Object.values(window.ClinicBoxCall.slots().audio)
                .includes("{ids['doc']}")""", timeout=10_000)
            assert _growth(ana)[ids["doc"]]["packets"] > 20, "together again: Ana hears again"
            portal.close()

            # Screen share replaces the facilitator's camera track (no renegotiation) and pins
            # the facilitator for everyone: Ana's slot now decodes the screen's picture size.
            camera_width = _inbound(ana)[ids["doc"]]["width"]
            doc.get_by_role("button", name="Share screen").click()
            expect(doc.locator("#share-btn")).to_have_text("Stop sharing")
            expect(ana.locator("#tiles figure").first).to_have_id(f"tile-{ids['doc']}")
            deadline = time.monotonic() + 15
            while _inbound(ana)[ids["doc"]]["width"] == camera_width:
                assert time.monotonic() < deadline, "the shared screen never reached Ana"
                time.sleep(0.5)
            assert _growth(ana)[ids["doc"]]["frames"] > 3, "the shared screen is not decoded"

            # Lock: the portal turns away a late patient with the right code.
            doc.get_by_role("button", name="Lock room").click()
            expect(doc.locator("#notice")).to_have_text(
                "The room is locked: nobody new can join.")
            late = browser.new_context(ignore_https_errors=True).new_page()
            late.goto(box.base_url + "/join")
            late.get_by_label("Session code (9 digits)").fill(code)
            late.get_by_label("Your name as others will see it").fill("Late")
            late.get_by_role("button", name="Continue").click()
            late.get_by_label("I understand and agree to join").check()
            late.get_by_role("button", name="Join the waiting room").click()
            assert "locked this session" in late.inner_text("[role=alert]")

            # Audio only: the box stops sending Ana any video (her video slots empty out).
            ana.get_by_role("button", name="Audio only").click()
            ana.wait_for_function("""() => Object.values(window.ClinicBoxCall.slots().video)
                .every((who) => who === null)""", timeout=10_000)
            assert _growth(ana)[ids["doc"]]["samples"] > 16_000, "audio must go on"
            # ...and Ana sends no video at all (a disabled track would still send black
            # frames), so the others stop receiving any from her.
            time.sleep(0.5)  # frames in flight
            sent = ana.evaluate(VIDEO_SENT_JS)
            time.sleep(2.0)
            assert ana.evaluate(VIDEO_SENT_JS) == sent, "audio only still sends video"

            # Remove: Ben's call ends on his side and his tile goes from Ana's screen.
            doc.locator(f"[id='tile-{ids['Ben']}']").get_by_role(
                "button", name="Remove (Ben)").click()
            expect(ben.locator("#notice")).to_have_text(
                "The facilitator removed you from the call.")
            expect(ana.locator(f"[id='tile-{ids['Ben']}']")).to_have_count(0)
            # He is un-admitted in the portal too: his link no longer opens the call.
            ben.goto(box.base_url + "/call")
            ben.wait_for_url(re.compile(r"/join/wait$"))
            assert "removed you" in ben.inner_text("main")
            browser.close()
    finally:
        assert box.stop() == 0
        logs = box.log_text()
        for secret in ("Ana", "Ben", "hello from Ana"):
            assert secret not in logs, f"{secret!r} leaked into the log"

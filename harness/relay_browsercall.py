"""A real browser call across the NAT lab: a Chromium patient at home reaches a clinic box
behind carrier-grade NAT, its media only through the centre's coturn.

`clinicbox serve` runs in the lab's box host (behind the clinic router's NAT) with the TURN
service the centre sent it; the facilitator's Chromium sits on the clinic LAN and opens the
box's own address; the patient's Chromium sits behind the home router's NAT, on the patient's
emulated link. The patient's pages reach the box through the clinic router's TCP forward
(the lab's stand-in for the centre's tunnel, which `tests/relay` and `tests/e2e` test on its
own); media has no way through but the relay. At the end every page's selected ICE pair is
read from `getStats()`, so a caller can check what carried the call.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.browsercall import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CLINICBOX,
    PORT,
    PROBE,
    BrowserCallError,
    BrowserCallRun,
    BrowserSeat,
    Participant,
    _add_clinician,
    _admit_all,
    _box_env,
    _enter_waiting_room,
    _fill,
    _in_namespace,
    _join_when_ready,
    _read_page,
    _start_session,
    _stop_box,
    _trusting_home,
    _wait_healthy,
)
from harness.nat import table_name
from harness.relay_lab import RelayLab

#: coturn's plain TURN port (UDP and TCP); TURN over TLS is on 443.
TURN_PORT = 3478

#: The selected candidate pair of the page's live peer connection, as getStats() reports it.
_SELECTED_PAIR_JS = """() => {
  const pcs = (window.__clinicboxLab || {}).pcs || [];
  const pc = pcs[pcs.length - 1];
  if (!pc) { return null; }
  const sdp = pc.localDescription ? pc.localDescription.sdp : "";
  const codecs = [...new Set([...sdp.matchAll(/a=rtpmap:\\d+ ([^/]+)/g)].map((m) => m[1]))];
  return pc.getStats().then((report) => {
    let pair = null;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        pair = report.get(s.selectedCandidatePairId);
      }
    });
    if (!pair) { return null; }
    const local = report.get(pair.localCandidateId) || {};
    const remote = report.get(pair.remoteCandidateId) || {};
    return {state: pair.state, local: local.candidateType, remote: remote.candidateType,
            relayProtocol: local.relayProtocol || null, protocol: local.protocol || null,
            bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived,
            offerBytes: sdp.length, offerCodecs: codecs};
  });
}"""


def block_plain_turn_tcp(relay_lab: RelayLab) -> None:
    """The patient's router also drops TCP to TURN's plain port: with `patient_drops_udp`,
    only TURN over TLS on 443 is left (a network that lets nothing out but HTTPS)."""
    rule = f'oifname "eth0" tcp dport {TURN_PORT} drop'
    done = relay_lab.lab.run(
        relay_lab.prouter, ["nft", "add", "rule", "ip", table_name(), "forward", *rule.split()]
    )
    if done.returncode != 0:
        raise RuntimeError(f"nft in the patient's router: {done.stderr.strip()[-300:]}")


@contextmanager
def _chromium(pw: Any, netns: str, workdir: Path, name: str, ca_file: Path) -> Iterator[Any]:
    """A page of a fresh headless Chromium inside `netns` that trusts the lab's CA."""
    home = _trusting_home(workdir / f"home-{name}", ca_file)
    context = pw.chromium.launch_persistent_context(
        str(workdir / f"chromium-{name}"),
        executable_path=_in_namespace(netns, CHROMIUM, workdir),
        headless=True,
        args=CHROMIUM_ARGS,
        env={"HOME": str(home), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        ignore_https_errors=True,
        viewport={"width": 640, "height": 720},
    )
    try:
        context.add_init_script(path=str(PROBE))
        context.set_default_timeout(60_000)
        yield context.pages[0] if context.pages else context.new_page()
    finally:
        context.close()


@dataclass
class RelayBrowserCallRun:
    """The call's recording and, per participant, the ICE pair its browser selected (with
    the size and codecs of its last offer)."""

    call: BrowserCallRun
    pairs: dict[str, dict[str, Any] | None]


def run_relay_browser_call(
    relay_lab: RelayLab,
    seconds: float,
    workdir: Path,
    settle_s: float = 3.0,
    join_timeout_s: float = 90.0,
) -> RelayBrowserCallRun:
    """One call between the nurse (facilitator, clinic LAN) and the patient at home, both in
    headless Chromium; `seconds` measured once both have heard audio."""
    from playwright.sync_api import sync_playwright

    lab = relay_lab.lab
    box, nurse, patient = relay_lab.box, relay_lab.nurse, relay_lab.patient
    workdir.mkdir(parents=True, exist_ok=True)
    # The box's data dir already holds the centre's TURN service (the lab delivered it).
    data_dir = relay_lab.box_data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    env = _box_env(data_dir, box, [box.ip, nurse.ip], SSL_CERT_FILE=str(relay_lab.ca_file))
    _add_clinician(env)
    log_path = workdir / "box.log"
    with log_path.open("w") as log:
        box_proc = lab.popen(
            box, [CLINICBOX, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log, text=True
        )
    lan_base = f"https://{box.ip}:{PORT}"
    # Behind NAT the patient knows only the clinic router's public address, forwarded to
    # the box; without NAT the routers route to the box's own address.
    home_base = f"https://{relay_lab.crouter.ip if relay_lab.nat else box.ip}:{PORT}"
    seats = {
        "nurse": BrowserSeat("nurse", role="facilitator"),
        "patient": BrowserSeat("patient", link=relay_lab.patient_link),
    }
    participants = {name: Participant(seat) for name, seat in seats.items()}
    with ExitStack() as stack:
        stack.callback(_stop_box, box_proc)
        pw = stack.enter_context(sync_playwright())
        ca_file = relay_lab.ca_file
        doc = stack.enter_context(_chromium(pw, nurse.netns, workdir, "nurse", ca_file))
        home = stack.enter_context(_chromium(pw, patient.netns, workdir, "patient", ca_file))
        _wait_healthy(doc, lan_base, box_proc, log_path)
        session_url, code = _start_session(doc, lan_base)
        deadline = time.time() + join_timeout_s
        _enter_waiting_room(home, home_base, code, "patient")
        _admit_all(doc, session_url, 1, deadline)
        deadline = time.time() + join_timeout_s
        audio_only = _join_when_ready({"patient": home}, deadline)
        participants["patient"].audio_only_start = audio_only["patient"]
        doc.goto(session_url)
        doc.get_by_role("link", name="Open the call").click()
        _join_when_ready({"nurse": doc}, deadline)
        pages = {"nurse": doc, "patient": home}
        while time.time() < deadline:
            if all(_read_page(page).get("firstAudioAt") for page in pages.values()):
                break
            time.sleep(0.5)
        start = time.time() + settle_s
        window = (start, start + seconds)
        time.sleep(max(0.0, window[1] - time.time()) + 1.0)
        pairs: dict[str, dict[str, Any] | None] = {}
        for name, page in pages.items():
            _fill(participants[name], _read_page(page))
            pairs[name] = page.evaluate(_SELECTED_PAIR_JS)
    if box_proc.returncode not in (0, None):
        raise BrowserCallError(f"clinicbox serve ended with {box_proc.returncode}")
    call = BrowserCallRun(participants, window, log_path.read_text(errors="replace"))
    return RelayBrowserCallRun(call, pairs)

"""A Chromium patient behind NAT on 3G calls a LAN clinician through the box behind
endpoint-dependent NAT: the media goes through the centre's coturn.

The NAT lab (appliance.lab.relay_lab) with a real `clinicbox serve` in the box's namespace,
holding the centre's TURN service as down-sync left it. The patient's Chromium runs in the
patient's namespace and opens the portal through the clinic router (which forwards TCP to
the box: in the field the centre's tunnel does); the clinician's Chromium runs on the clinic
LAN. The patient's call page lists the relay, the clinician's does not; both hear and see
each other, the patient's selected pair has a relay candidate, the clinician's none.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.files import write_private
from appliance.lab import LabUnavailable, profiles
from appliance.lab.relay_lab import RelayLab
from appliance.media.turn import STATE_FILE
from tests.conftest import CLINICBOX, RunningBox, box_env
from tests.e2e.conftest import add_user, chromium_in, patient_joins, sign_in, wait_healthy
from tests.e2e.test_call_sfu import CALL_ARGS, _me, _until_everyone

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.netns, pytest.mark.browser, pytest.mark.timeout(180)]

PORT = 8443
# Candidate types of the selected pair (local, remote), per transport.
PAIR_TYPES_JS = """async () => {
  const report = await window.ClinicBoxCall.stats();
  const byId = {};
  report.forEach((s) => { byId[s.id] = s; });
  const out = [];
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = byId[s.selectedCandidatePairId];
      out.push(byId[pair.localCandidateId].candidateType,
               byId[pair.remoteCandidateId].candidateType);
    }
  });
  return out;
}"""


@pytest.fixture
def relay_lab() -> Iterator[RelayLab]:
    if shutil.which("turnserver") is None:
        pytest.skip("coturn is not installed (firmware_scripts/dev/install-test-deps.sh)")
    try:
        with RelayLab(patient_link=profiles.THREE_G) as made:
            yield made
    except LabUnavailable as exc:
        pytest.skip(f"weak-link lab unavailable: {exc}")


def _ice_servers(page) -> list:
    return json.loads(page.locator("#call").get_attribute("data-ice-servers") or "null")


def test_chromium_patient_behind_nat_reaches_the_box_through_the_relay(
    relay_lab: RelayLab, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    write_private(data_dir / STATE_FILE, (relay_lab.box_data_dir / STATE_FILE).read_bytes())
    log = (tmp_path / "box.log").open("w")
    proc = relay_lab.lab.popen(
        relay_lab.box,
        [CLINICBOX, "serve"],
        env=box_env(data_dir, PORT, SSL_CERT_FILE=str(relay_lab.ca_file))
        | {
            "CLINICBOX_HOST": "0.0.0.0"  # reached from the LAN and through the clinic router
        },
        stdout=log,
        stderr=log,
        text=True,
    )
    box = RunningBox(proc, PORT, data_dir, tmp_path / "box.log")
    lan_base = f"https://{relay_lab.box.ip}:{PORT}"
    remote_base = f"https://{relay_lab.crouter.ip}:{PORT}"
    with playwright_api.sync_playwright() as pw:
        clinic = pw.chromium.launch(
            executable_path=chromium_in(relay_lab.nurse.netns, _dir(tmp_path, "nurse")),
            args=CALL_ARGS,
        )
        home = pw.chromium.launch(
            executable_path=chromium_in(relay_lab.patient.netns, _dir(tmp_path, "patient")),
            args=CALL_ARGS,
        )
        context = clinic.new_context(ignore_https_errors=True)
        page = context.new_page()
        try:
            wait_healthy(page, RunningBoxAt(box, lan_base))
        except RuntimeError:
            pytest.fail(box.log_text()[-2000:])
        doc = sign_in(context, lan_base)
        doc.goto(lan_base + "/sessions/new")
        doc.get_by_label("Title").fill("Remote call")
        doc.get_by_label("Date and time").fill("2026-11-24T10:00")
        doc.get_by_role("button", name="Schedule").click()
        code = doc.inner_text("#session-code").replace(" ", "")
        doc.get_by_role("button", name="Start session").click()

        ana = patient_joins(home, remote_base, code, "Ana", shots=False)
        doc.reload()
        doc.get_by_role("button", name="Admit all (1)").click()
        ana.wait_for_url(re.compile(r"/call$"), timeout=20_000)
        servers = _ice_servers(ana)
        assert servers and any(u.startswith("turn:") for u in servers[0]["urls"])
        ana.get_by_role("button", name="Join the call").click()
        expect(ana.locator("#room")).to_be_visible(timeout=30_000)
        doc.get_by_role("link", name="Open the call").click()
        assert _ice_servers(doc) == []  # on the clinic LAN: no relay
        doc.get_by_role("button", name="Join the call").click()
        expect(doc.locator("#room")).to_be_visible(timeout=30_000)
        ids = {"ana": _me(ana), "doc": _me(doc)}

        _until_everyone(ana, [ids["doc"]], timeout=45)
        _until_everyone(doc, [ids["ana"]], timeout=45)
        assert "relay" in ana.evaluate(PAIR_TYPES_JS), ana.evaluate(PAIR_TYPES_JS)
        assert "relay" not in doc.evaluate(PAIR_TYPES_JS), doc.evaluate(PAIR_TYPES_JS)
        clinic.close()
        home.close()


def _dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


class RunningBoxAt(RunningBox):
    """The running box as seen from a given base URL (the lab's addresses, not loopback)."""

    def __init__(self, box: RunningBox, base: str) -> None:
        super().__init__(box.proc, box.port, box.data_dir, box.log_path)
        self._base = base

    @property
    def base_url(self) -> str:
        return self._base

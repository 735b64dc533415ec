"""A remote patient in headless Chromium joins a call through the centre's relay.

A real `clinicbox-central serve`, a real claimed `clinicbox serve` named for the relay and
Chromium (fake camera and microphone) share a network namespace with only loopback. The
patient opens `https://<centre>/c/<name>/join` and never talks to the box's portal directly:
join, consent, waiting room, call page, its script and signalling all go through the tunnel.
The facilitator works on the box's own (LAN) address and admits the patient; both then
decode each other's video and receive each other's audio (media goes between browser and
box; NAT traversal with TURN is tested with the TURN work).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    ARGS,
    add_user,
    chromium_in,
    loopback_namespace,
    patient_joins,
    sign_in,
    start_box_in,
    starting_soon,
    wait_healthy,
)
from tests.e2e.test_call_sfu import CALL_ARGS, _me, _until_everyone
from tests.relay.conftest import FAST_TUNNEL, SLUG
from tests.sync.conftest import VENV_BIN, clean_env

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CENTRAL = str(VENV_BIN / "clinicbox-central")


def _in(namespace: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def test_a_remote_patient_joins_the_call_through_the_relay(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    central_dir = tmp_path / "central"
    with loopback_namespace() as namespace:
        centre = subprocess.Popen(
            _in(
                namespace,
                [
                    CENTRAL,
                    "--data-dir",
                    str(central_dir),
                    "serve",
                    "--port",
                    "8600",
                    "--workers",
                    "2",
                ],
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=clean_env(),
        )
        box = None
        try:
            url = centre.stdout.readline().split("serving on ")[1].split()[0].rstrip("/")
            token = subprocess.run(
                [CENTRAL, "--data-dir", str(central_dir), "claim-token"],
                capture_output=True,
                text=True,
                check=True,
                env=clean_env(),
            ).stdout.strip()
            claimed = subprocess.run(
                _in(
                    namespace,
                    [
                        sys.executable,
                        "-c",
                        (
                            "from pathlib import Path;"
                            "from appliance.identity import DeviceIdentity;"
                            "from sync.agent.claim import claim_box, save_link;"
                            f"i=DeviceIdentity.load_or_create(Path({str(data_dir / 'secrets')!r}));"
                            f"r=claim_box({url!r},{token!r},i);"
                            f"save_link(Path({str(data_dir)!r}),r.link({url!r}));print(r['device_id'])"
                        ),
                    ],
                ),
                capture_output=True,
                text=True,
                env=clean_env(),
                timeout=60,
            )
            assert claimed.returncode == 0, claimed.stderr
            subprocess.run(
                [
                    CENTRAL,
                    "--data-dir",
                    str(central_dir),
                    "relay",
                    "add",
                    claimed.stdout.strip(),
                    SLUG,
                ],
                check=True,
                capture_output=True,
                env=clean_env(),
            )
            box = start_box_in(
                namespace, data_dir, CLINICBOX_MEDIA_ADDRESSES="127.0.0.1", **FAST_TUNNEL
            )
            _call(tmp_path, namespace, box, f"{url}/c/{SLUG}")
        finally:
            if box is not None:
                box.stop()
            centre.terminate()
            centre.wait(15)


def _call(tmp_path: Path, namespace: str, box, relay: str) -> None:
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_in(namespace, tmp_path), args=[*ARGS, *CALL_ARGS[len(ARGS) :]]
        )
        context = browser.new_context(ignore_https_errors=True)
        wait_healthy(context.new_page(), box)
        doc = sign_in(context, box.base_url)
        doc.goto(box.base_url + "/sessions/new")
        doc.get_by_label("Title").fill("Relayed call")
        doc.get_by_label("Date and time").fill(starting_soon())
        doc.get_by_role("button", name="Schedule").click()
        code = doc.inner_text("#session-code").replace(" ", "")
        doc.get_by_role("button", name="Start session").click()
        # Once the tunnel is up the session page shows the link for patients at home.
        deadline = time.monotonic() + 30
        while not doc.locator("#remote-invite-link").count():
            assert time.monotonic() < deadline, "no remote invite link"
            time.sleep(0.5)
            doc.reload()
        assert doc.inner_text("#remote-invite-link").startswith(relay + "/i/")

        ana = patient_joins(browser, relay, code, "Ana", shots=False)
        assert ana.url.startswith(relay)
        doc.reload()
        doc.get_by_role("button", name="Admit all (1)").click()
        ana.wait_for_url(re.compile(re.escape(relay) + r"/call$"), timeout=20_000)
        expect(ana.locator("#check-cam span")).to_have_text("working")
        expect(ana.locator("#check-net span")).to_have_text(re.compile("good|fair|slow"))
        ana.get_by_role("button", name="Join the call").click()
        expect(ana.locator("#room")).to_be_visible(timeout=20_000)
        ana_id = _me(ana)
        doc.get_by_role("link", name="Open the call").click()
        expect(doc.locator("#check-cam span")).to_have_text("working")
        doc.get_by_role("button", name="Join the call").click()
        expect(doc.locator("#room")).to_be_visible(timeout=20_000)
        doc_id = _me(doc)
        _until_everyone(ana, [doc_id])
        _until_everyone(doc, [ana_id])
        browser.close()

"""The waiting room fetches the call script while the patient waits, in real Chromium.

On GPRS the call script (~13 kB gzipped) had taken 4-8 s of the join, after admission. The
waiting page now asks the browser to prefetch it; the call page then runs it from the
browser's cache, at most revalidated: its Resource Timing entry shows no body transferred. The patient's Chromium
trusts the box's CA, as a clinic tablet that installed it does (or the centre's public
certificate, through the relay): Chromium keeps nothing in its cache from a site whose
certificate it was told to ignore.
"""

from __future__ import annotations

import re
import subprocess
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


def _trusting_home(directory: Path, ca_file: Path) -> Path:
    """A HOME whose NSS database (Chromium's extra roots on Linux) trusts the box's CA."""
    nssdb = directory / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for argv in (
        ["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"],
        ["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "box-ca", "-i", str(ca_file)],
    ):
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
    return directory


def test_the_call_script_is_fetched_in_the_waiting_room(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    with loopback_namespace() as namespace:
        box = start_box_in(namespace, data_dir, CLINICBOX_MEDIA_ADDRESSES="127.0.0.1")
        try:
            with sync_playwright() as pw:
                deadline = time.monotonic() + 60
                while not (data_dir / "tls" / "ca.pem").exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
                home = _trusting_home(tmp_path / "home", data_dir / "tls" / "ca.pem")
                browser = pw.chromium.launch(
                    executable_path=chromium_in(namespace, tmp_path),
                    args=CALL_ARGS,
                    env={"HOME": str(home), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                )
                _prefetch_then_call(browser, box)
                browser.close()
        finally:
            box.stop()


def _prefetch_then_call(browser, box) -> None:
    context = browser.new_context(ignore_https_errors=True)
    wait_healthy(context.new_page(), box)
    base = box.base_url.replace("127.0.0.1", "localhost")
    doc = sign_in(context, base)
    doc.goto(base + "/sessions/new")
    doc.get_by_label("Title").fill("Prefetch call")
    doc.get_by_label("Date and time").fill(starting_soon())
    doc.get_by_role("button", name="Schedule").click()
    code = doc.inner_text("#session-code").replace(" ", "")
    doc.get_by_role("button", name="Start session").click()
    ana = patient_joins(browser, base, code, "Ana", shots=False)
    fetched: list[str] = []
    ana.on(
        "requestfinished",
        lambda r: fetched.append(r.url) if r.url.endswith("/static/call.js") else None,
    )
    deadline = time.monotonic() + 20
    while not fetched and time.monotonic() < deadline:
        ana.wait_for_timeout(200)
    assert fetched, "the waiting room did not fetch the call script"
    doc.reload()
    doc.get_by_role("button", name="Admit Ana").click()
    ana.wait_for_url(re.compile(r"/call$"), timeout=15_000)
    expect(ana.locator("#check-cam span")).to_have_text("working", timeout=20_000)
    script = ana.evaluate(
        """() => performance.getEntriesByType("resource")
            .filter((e) => e.name.endsWith("/static/call.js"))
            .map((e) => ({transferred: e.transferSize, body: e.decodedBodySize}))"""
    )
    assert len(script) == 1 and script[0]["body"] > 10_000, script
    # From the browser's cache: at most revalidated (a 304, ~300 bytes of headers).
    assert script[0]["transferred"] < 1000, script
    # The call page works from the cached script: Join gets the patient in.
    ana.get_by_role("button", name="Join the call").click()
    expect(ana.locator("#room")).to_be_visible(timeout=30_000)

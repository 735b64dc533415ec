"""Page weight: what a patient's phone downloads to join a call, and the clinician dashboard.

Starts a real `clinicbox serve`, drives headless Chromium through the patient path (join page,
consent, waiting room, call page with its script and stylesheet) and the clinician dashboard,
and sums every response body (uncompressed) and request. Compares the join + call total to
the issue's 150 KB budget as a ratio. Last line: one JSON object.

    python benchmarks/page_weight.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.conftest import CLINICBOX, box_env, start_box  # noqa: E402

BUDGET_BYTES = 150 * 1024
PASSWORD = "benchmark password 1"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


class Meter:
    """Counts requests and uncompressed response body bytes seen by one browser context."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.by_url: dict[str, int] = {}

    def on_finished(self, request) -> None:
        # The box does not compress, so the body size on the wire is the uncompressed size.
        size = request.sizes()["responseBodySize"]
        self.requests += 1
        self.bytes += size
        path = re.sub(r"^https://[^/]+", "", request.url)
        self.by_url[path] = self.by_url.get(path, 0) + size


def measure(base: str, browser) -> dict[str, object]:
    clinician = browser.new_context(ignore_https_errors=True)
    doc = clinician.new_page()
    doc.goto(base + "/login")
    doc.fill("#username", "dr.bench")
    doc.fill("#password", PASSWORD)
    doc.click("main button[type=submit]")
    doc.wait_for_url(re.compile(r"/dashboard$"))
    for n in range(3):
        doc.goto(base + "/sessions/new")
        doc.fill("#title", f"Group {n}")
        # Minutes from now: inside the session code's join window, so the patient can join.
        soon = datetime.now() + timedelta(minutes=10 + n)
        doc.fill("#starts_at", soon.strftime("%Y-%m-%dT%H:%M"))
        doc.click("main button[type=submit]")
        doc.wait_for_url(re.compile(r"/sessions/[0-9a-f-]{36}$"))
    code = doc.inner_text("#session-code").replace(" ", "")
    session_url = doc.url

    patient = browser.new_context(ignore_https_errors=True, viewport={"width": 360, "height": 740})
    meter = Meter()
    patient.on("requestfinished", meter.on_finished)
    page = patient.new_page()
    page.goto(base + "/join")
    page.fill("#code", code)
    page.fill("#name", "Bench")
    page.click("main button[type=submit]")
    page.check("#agree")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/join/wait$"))
    doc.goto(session_url)
    doc.click("button[value=admit_all]")
    page.wait_for_url(re.compile(r"/call$"), timeout=15_000)
    page.wait_for_load_state("load")
    page.locator("#check-net span").filter(has_text="ms").wait_for(timeout=15_000)

    # The dashboard from a cold cache: sign in, then a new context with only the cookies.
    fresh = browser.new_context(ignore_https_errors=True)
    login = fresh.new_page()
    login.goto(base + "/login")
    login.fill("#username", "dr.bench")
    login.fill("#password", PASSWORD)
    login.click("main button[type=submit]")
    login.wait_for_url(re.compile(r"/dashboard$"))
    cold = browser.new_context(ignore_https_errors=True, storage_state=fresh.storage_state())
    dash = Meter()
    cold.on("requestfinished", dash.on_finished)
    dash_page = cold.new_page()
    dash_page.goto(base + "/dashboard")
    dash_page.wait_for_load_state("load")
    assert dash_page.url.endswith("/dashboard"), "not signed in"
    return {"join": meter, "dashboard": dash}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same measurement (it is quick)")
    parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        env = box_env(data, 1) | {"CLINICBOX_NEW_PASSWORD": PASSWORD}
        subprocess.run([CLINICBOX, "user", "add", "dr.bench", "--role", "clinician"],
                       env=env, check=True, capture_output=True, timeout=30)
        box = start_box(data)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                result = measure(box.base_url, browser)
                browser.close()
        finally:
            box.stop()
    join, dash = result["join"], result["dashboard"]
    print("patient join + call pages (uncompressed response bodies):")
    for path, size in join.by_url.items():
        print(f"  {size:7d} B  {path}")
    print(f"  total {join.bytes} B in {join.requests} requests "
          f"({join.bytes / BUDGET_BYTES:.1%} of the 150 KB budget)")
    print(f"clinician dashboard: {dash.bytes} B in {dash.requests} requests")
    print(json.dumps({
        "join_call_bytes": join.bytes,
        "join_call_requests": join.requests,
        "join_call_budget_ratio": round(join.bytes / BUDGET_BYTES, 3),
        "dashboard_bytes": dash.bytes,
        "dashboard_requests": dash.requests,
    }))


if __name__ == "__main__":
    main()

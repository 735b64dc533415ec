"""Page weight: what a patient's phone downloads to join a call, each page of the patient's
own space, and the clinician dashboard.

Starts a real `clinicbox serve`, drives headless Chromium through the patient path (join page,
consent, waiting room, call page with its script and stylesheet), the patient's space opened
with an access card (each page from a cold cache, with its stylesheet and script) and the
clinician dashboard, and sums every response body (uncompressed) and request. Compares the
join + call total to the 150 KB budget and each space page to its 30 KB budget, as ratios.
Last line: one JSON object.

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
SPACE_BUDGET_BYTES = 30 * 1024
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
    # The last one starts in ten minutes: its code opens only inside the join window.
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
    return {"join": meter, "dashboard": dash, "space": measure_space(base, browser, doc)}


def measure_space(base: str, browser, doc) -> dict[str, Meter]:
    """Each page of the patient's space, cold cache, after the clinician issued a card,
    scheduled a PHQ-9 and the mood check, wrote a safety plan and gave a lesson."""
    doc.goto(base + "/patients")
    doc.click("main h2 a")
    doc.wait_for_url(re.compile(r"/patients/[0-9a-f-]{36}$"))
    record = doc.url
    for kind in ("PHQ9", "MOOD"):
        doc.select_option("#kind", kind)
        doc.click("button[name=action][value=add]")
    doc.click("#plan-link")
    for field in ("warning_signs", "coping", "distraction", "help", "professionals",
                  "safe_environment"):
        doc.fill(f"#{field}", "A sentence or two written with the clinician, as patients do. " * 3)
    doc.click("main button[type=submit]")
    doc.goto(record)
    doc.select_option("#lesson", "sleep")
    doc.fill("#homework", "Up at seven every day this week.")
    doc.click("form[action$='/lessons'] button")
    doc.goto(record + "/card")
    doc.click("button[value=issue]")
    code = doc.inner_text("#card-code").replace("-", "")

    phone = {"width": 360, "height": 740}
    signed = browser.new_context(ignore_https_errors=True, viewport=phone)
    page = signed.new_page()
    page.goto(base + "/card#" + code)
    page.wait_for_url(re.compile(r"/me$"))
    for n in range(5):
        page.goto(base + "/me/messages")
        page.fill("#body", f"A message of an ordinary length from the patient, number {n}.")
        page.click("form[action$='/me/messages'] button")
    page.goto(base + "/me/lessons")
    lesson = page.get_attribute("#my-lessons a", "href")
    cookies = signed.storage_state()
    signed.close()
    pages = ["/card", "/me", "/me/messages", "/me/mood", "/me/measures/phq9", "/me/plan",
             "/me/crisis", "/me/lessons", lesson]
    meters: dict[str, Meter] = {}
    for path in pages:
        cold = browser.new_context(ignore_https_errors=True, viewport=phone,
                                   storage_state=cookies if path != "/card" else None)
        meter = Meter()
        cold.on("requestfinished", meter.on_finished)
        shown = cold.new_page()
        shown.goto(base + path)
        shown.wait_for_load_state("load")
        assert path == "/card" or shown.url.endswith(path), f"{path}: not in the space"
        meters[path if path != lesson else "/me/lessons/<id>"] = meter
        cold.close()
    return meters


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
    space = result["space"]
    print("patient space pages, each from a cold cache (budget 30 KB each):")
    for path, meter in space.items():
        print(f"  {meter.bytes:7d} B in {meter.requests} requests  {path}")
    heaviest = max(meter.bytes for meter in space.values())
    print(json.dumps({
        "join_call_bytes": join.bytes,
        "join_call_requests": join.requests,
        "join_call_budget_ratio": round(join.bytes / BUDGET_BYTES, 3),
        "dashboard_bytes": dash.bytes,
        "dashboard_requests": dash.requests,
        "space_page_bytes": {path: meter.bytes for path, meter in space.items()},
        "space_max_bytes": heaviest,
        "space_budget_ratio": round(heaviest / SPACE_BUDGET_BYTES, 3),
    }))


if __name__ == "__main__":
    main()

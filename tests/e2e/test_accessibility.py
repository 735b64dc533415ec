"""axe-core over the pages a clinician and a patient meet, in real headless Chromium, on a
desktop and a 390x844 phone: no serious or critical violation.

axe-core comes from the npm registry at the version pinned in tests/e2e/axe/package-lock.json
(`make system-deps` installs it there); it is injected into each page as it is served (the
context bypasses the pages' Content-Security-Policy for that one script).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, RunningBox, start_box
from tests.e2e.conftest import ARGS, CHROMIUM, add_user, patient_joins
from tests.e2e.test_clinician_day import PHONE_390, answer_phq9, schedule, signed_in

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.browser, pytest.mark.pages, pytest.mark.timeout(240)]

AXE = REPO / "tests" / "e2e" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 800}


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical violations on `page`, one line each."""
    if not AXE.exists():
        raise AssertionError(f"{AXE} is missing: run `make system-deps` (npm ci in tests/e2e/axe)")
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("""async () => {
      const r = await axe.run(document, { resultTypes: ["violations"] });
      return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => ({ id: v.id, impact: v.impact,
                       nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
    }""")
    return [f"{page.url}: {v['impact']} {v['id']} at {json.dumps(v['nodes'])}" for v in result]


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[RunningBox]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    box = start_box(data_dir)
    try:
        yield box
    finally:
        box.stop()


def test_pages_have_no_serious_accessibility_violations(clinic: RunningBox) -> None:
    base = clinic.base_url
    found: list[str] = []
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        doc = signed_in(browser, base, "dr.ada", viewport=DESKTOP)
        session_url, code = schedule(doc, "Accessible group")
        ana = patient_joins(browser, base, code, "Ana Lima", shots=False)
        doc.reload()
        doc.get_by_role("button", name="Admit Ana Lima").click()
        ana.wait_for_url(re.compile(r"/call$"), timeout=15_000)
        answer_phq9(ana, base, item9=1)
        ana.goto(base + "/call")
        ana.locator("#leave-btn").evaluate("(b) => b.form.submit()")
        ana.wait_for_url(re.compile(r"/join/wait$"))

        checked = browser.new_context(ignore_https_errors=True, bypass_csp=True, viewport=DESKTOP)
        staff_page = checked.new_page()
        staff_page.goto(base + "/login")
        staff_page.get_by_label("Username").fill("dr.ada")
        staff_page.get_by_label("Password").fill("correct horse battery")
        staff_page.get_by_role("button", name="Sign in").click()
        staff_page.wait_for_url(re.compile(r"/dashboard$"))
        # The checker itself finds what it should (an image without text, no page language).
        staff_page.goto(base + "/healthz")
        staff_page.set_content("<html><body><img src='/static/favicon.svg'></body></html>")
        caught = " ".join(serious_violations(staff_page))
        assert "image-alt" in caught and "html-has-lang" in caught, caught
        patient_id = doc.evaluate(
            "() => document.querySelector('#people a[href^=\"/patients/\"]').getAttribute('href')"
        )
        staff_paths = [
            "/dashboard",
            session_url.removeprefix(base),
            "/follow-up",
            "/patients",
            patient_id,
            "/sessions/new",
            session_url.removeprefix(base) + "/notes",
            session_url.removeprefix(base) + "/call",
            "/no-such-page",
        ]
        patient_context = browser.new_context(
            ignore_https_errors=True, bypass_csp=True, viewport=PHONE_390
        )
        # The patient's own cookie, in a context that may inject the checker.
        patient_context.add_cookies(ana.context.cookies())
        patient_page = patient_context.new_page()
        patient_paths = ["/join/wait", "/join/questionnaire/phq9", "/join"]
        for viewport in (DESKTOP, PHONE_390):
            staff_page.set_viewport_size(viewport)
            patient_page.set_viewport_size(viewport)
            for path in staff_paths:
                staff_page.goto(base + path)
                found += serious_violations(staff_page)
            for path in patient_paths:
                patient_page.goto(base + path)
                if path == "/join/wait":  # her own page: she left, and may rejoin
                    assert patient_page.locator("#rejoin-btn").count() == 1
                found += serious_violations(patient_page)
        # The end-of-session confirmation and the ended session page.
        staff_page.goto(session_url)
        staff_page.get_by_role("button", name="End session…").click()
        found += serious_violations(staff_page)
        browser.close()
    assert found == [], "\n".join(found)

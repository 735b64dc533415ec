"""Browser-test helpers: Chromium flags, accounts, signing in, a patient joining."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import CLINICBOX, REPO, box_env

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
PASSWORD = "correct horse battery"
ARTIFACTS = REPO / "test-artifacts"
PHONE = {"width": 360, "height": 740}


def add_user(data_dir: Path, username: str, role: str) -> None:
    env = box_env(data_dir, 1) | {"CLINICBOX_NEW_PASSWORD": PASSWORD}
    done = subprocess.run([CLINICBOX, "user", "add", username, "--role", role], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(context, base: str):
    page = context.new_page()
    page.goto(base + "/login")
    page.get_by_label("Username").fill("dr.ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    return page


def all_labelled(page) -> None:
    """Every form control has a label a screen reader can announce."""
    unlabelled = page.evaluate("""() => Array.from(
        document.querySelectorAll("input:not([type=hidden]), select, textarea"))
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
        .map((el) => el.name || el.id)""")
    assert unlabelled == [], f"unlabelled controls on {page.url}: {unlabelled}"


def fits_phone(page) -> None:
    """Nothing on the page is wider than the 360 px screen (no sideways scrolling), and its
    controls are labelled."""
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width} px wide"
    all_labelled(page)


def patient_joins(browser, base: str, code: str, name: str, shots: bool):
    context = browser.new_context(ignore_https_errors=True, viewport=PHONE)
    page = context.new_page()
    page.goto(base + "/join")
    page.get_by_label("Session code (6 digits)").fill(code)
    page.get_by_label("Your name as others will see it").fill(name)
    fits_phone(page)
    if shots:
        shot(page, "join")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Join the waiting room").click()
    assert page.get_by_role("alert").inner_text().startswith("To join you need to tick")
    page.get_by_label("I understand and agree to join").check()
    fits_phone(page)
    if shots:
        shot(page, "consent")
    page.get_by_role("button", name="Join the waiting room").click()
    page.wait_for_url(re.compile(r"/join/wait$"))
    assert "will let you in soon" in page.inner_text("#wait-status")
    if shots:
        shot(page, "waiting-room")
    return page



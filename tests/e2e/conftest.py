"""Browser-test helpers: Chromium flags, accounts, signing in, a patient joining, and a
network namespace holding only a loopback interface for real calls."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import CLINICBOX, REPO, RunningBox, box_env, free_port

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


def starting_soon(minutes: int = 10) -> str:
    """A start time a few minutes ahead (local time), inside the session code's join window."""
    return (datetime.now() + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M")


def patient_joins(browser, base: str, code: str, name: str, shots: bool):
    context = browser.new_context(ignore_https_errors=True, viewport=PHONE)
    page = context.new_page()
    page.goto(base + "/join")
    page.get_by_label("Session code (9 digits)").fill(code)
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




@contextmanager
def fresh_contexts(chromium: Any) -> Iterator[Any]:
    """`chromium`, shared by a module's tests, handed to one test: every context the test
    opens is closed after it, so the next test starts with no cookies, pages or storage."""
    before = list(chromium.contexts)
    try:
        yield chromium
    finally:
        for context in chromium.contexts:
            if context not in before:
                context.close()


@contextmanager
def loopback_namespace() -> Iterator[str]:
    """A network namespace whose only interface is loopback, removed afterwards.

    Chromium gathers ICE candidates on every interface it sees and prefers a non-loopback
    one even towards 127.0.0.1; inside this namespace it sees nothing but loopback, so call
    media cannot touch any address of the machine.
    """
    # CLINICBOX_E2E_NETNS: the name's prefix, for runs beside others on a shared machine.
    name = f"{os.environ.get('CLINICBOX_E2E_NETNS', 'cbx-e2e')}-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=10)


def chromium_in(namespace: str, directory: Path) -> str:
    """A Chromium executable path that starts Chromium inside `namespace` (for Playwright,
    which keeps talking to it over inherited pipes)."""
    wrapper = directory / "chromium-in-namespace"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def start_box_in(namespace: str, data_dir: Path, **env: str) -> RunningBox:
    """`clinicbox serve` inside `namespace`; wait for it with `wait_healthy` from a page
    there, since this process cannot reach the namespace's loopback. Its stderr goes to a file
    beside the data dir: a pipe nobody drains would stall the box once it fills."""
    port = free_port()
    log_path = data_dir.parent / "box.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, CLINICBOX, "serve"],
            env=box_env(data_dir, port, **env),
            stdout=subprocess.DEVNULL, stderr=log, text=True,
        )
    return RunningBox(proc, port, data_dir, log_path)


def wait_healthy(page, box: RunningBox, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if box.proc.poll() is not None:
            raise RuntimeError(f"clinicbox serve exited early: {box.log_text()}")
        try:
            if page.goto(box.base_url + "/healthz").status == 200:
                return
        except Exception:  # connection refused until the box listens
            pass
        time.sleep(0.3)
    raise RuntimeError("clinicbox serve did not become healthy in time")


@dataclass
class ScheduledCall:
    """A box in its own loopback namespace, Chromium beside it, and dr.ada signed in with a
    group session scheduled (not started yet)."""

    box: RunningBox
    browser: Any
    context: Any
    doc: Any
    base: str
    code: str
    session_url: str

    def start_and_admit(self, name: str) -> Any:
        """Start the session, have a patient join from a phone-sized page and admit them;
        the patient's page, on the call page."""
        self.doc.get_by_role("button", name="Start session").click()
        patient = patient_joins(self.browser, self.base, self.code, name, shots=False)
        self.doc.reload()
        self.doc.get_by_role("button", name=f"Admit {name}").click()
        patient.wait_for_url(re.compile(r"/call$"), timeout=15_000)
        return patient


@contextmanager
def scheduled_call(tmp_path: Path, title: str) -> Iterator[ScheduledCall]:
    """The set-up every browser call test shares; stops the box and browser afterwards."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_call_sfu import CALL_ARGS

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    with loopback_namespace() as namespace:
        box = start_box_in(namespace, data_dir, CLINICBOX_MEDIA_ADDRESSES="127.0.0.1")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=chromium_in(namespace, tmp_path), args=CALL_ARGS
                )
                context = browser.new_context(ignore_https_errors=True)
                wait_healthy(context.new_page(), box)
                base = box.base_url
                doc = sign_in(context, base)
                doc.goto(base + "/sessions/new")
                doc.get_by_label("Title").fill(title)
                doc.get_by_label("Date and time").fill(starting_soon())
                doc.get_by_role("button", name="Schedule").click()
                code = doc.inner_text("#session-code").replace(" ", "")
                yield ScheduledCall(box, browser, context, doc, base, code, doc.url)
                browser.close()
        finally:
            box.stop()

"""Between sessions, in real headless Chromium on a 360x740 phone against `clinicbox serve`.

A patient with an access card reads and sends messages and the clinician answers; a PHQ-9
scheduled between sessions with item 9 above zero flags and shows the crisis page; a lesson
added as a file is given, read and marked done; the safety plan opens offline once loaded;
the space in Arabic is right to left; a revoked card is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningBox, start_box
from tests.e2e.conftest import (
    ARGS,
    CHROMIUM,
    PHONE,
    add_user,
    fits_phone,
    fresh_contexts,
    patient_joins,
    shot,
    sign_in,
    starting_soon,
)
from tests.e2e.test_accessibility import serious_violations

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.pages, pytest.mark.timeout(480)]

LESSON = """---
title: Worry time
summary: Put worries off to a set time of day
minutes: 6
source: Borkovec TD et al. Stimulus control applications to the treatment of worry. 1983.
---
Pick **fifteen minutes** a day for worrying.
"""


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


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One Chromium for the module's tests (a launch is seconds on a busy machine)."""
    with playwright_api.sync_playwright() as pw:
        # The box's certificate comes from its own CA: a service worker (the offline safety
        # plan) registers only where the browser accepts the certificate.
        launched = pw.chromium.launch(
            executable_path=CHROMIUM, args=[*ARGS, "--ignore-certificate-errors"], headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def browser(chromium: object) -> Iterator[object]:
    """The module's Chromium, with the contexts this test opens closed after it."""
    with fresh_contexts(chromium) as shared:
        yield shared


def _patient_page(doc, base: str, name: str) -> str:
    doc.goto(base + "/patients")
    doc.get_by_role("link", name=name).click()
    doc.wait_for_url(re.compile(r"/patients/[0-9a-f-]{36}$"))
    return doc.url


def test_patient_space_on_a_phone(clinic: RunningBox, browser) -> None:
    base = clinic.base_url
    context = browser.new_context(ignore_https_errors=True)
    doc = sign_in(context, base)
    doc.get_by_role("link", name="Schedule a group session").click()
    doc.get_by_label("Title").fill("Thursday group")
    doc.get_by_label("Date and time").fill(starting_soon())
    doc.get_by_role("button", name="Schedule").click()
    code = doc.inner_text("#session-code").replace(" ", "")
    patient_joins(browser, base, code, "Rosa Díaz", shots=False).context.close()

    # The clinician issues the card: a QR code and the code, printed once.
    record = _patient_page(doc, base, "Rosa Díaz")
    doc.get_by_role("link", name="Access card").click()
    doc.get_by_role("button", name="Issue a card").click()
    assert doc.locator(".qr svg").count() == 1
    card_code = doc.inner_text("#card-code")
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", card_code)

    # Scanning the card opens the space in one step (the code rides in the fragment).
    phone = browser.new_context(ignore_https_errors=True, viewport=PHONE)
    rosa = phone.new_page()
    rosa.goto(base + "/card#" + card_code.replace("-", ""))
    rosa.wait_for_url(re.compile(r"/me$"))
    expect(rosa.locator("h1")).to_have_text("Your space")
    fits_phone(rosa)
    rosa.get_by_role("link", name="Messages with your care team").click()
    expect(rosa.locator("#emergency-notice")).to_contain_text("not for emergencies")
    rosa.get_by_label("Write to your care team").fill("Could we talk about sleep on Thursday?")
    rosa.get_by_role("button", name="Send").click()
    expect(rosa.locator("#thread")).to_contain_text("Could we talk about sleep")
    fits_phone(rosa)
    shot(rosa, "space-messages")

    doc.goto(base + "/dashboard")
    expect(doc.locator("#unread-messages")).to_contain_text("Rosa Díaz")
    doc.locator("#unread-messages a").click()
    doc.get_by_label("Reply").fill("Yes, let us start with that.")
    doc.get_by_role("button", name="Send").click()
    rosa.goto(base + "/me")
    expect(rosa.locator("#unread")).to_have_text("1 new")
    rosa.get_by_role("link", name="Messages with your care team").click()
    expect(rosa.locator("#thread")).to_contain_text("Yes, let us start with that.")

    # A PHQ-9 scheduled between sessions; item 9 above zero: flag and crisis page at once.
    doc.goto(record)
    doc.get_by_label("Ask the patient for").select_option("PHQ9")
    doc.get_by_role("button", name="Schedule", exact=True).click()
    doc.get_by_role("link", name="Write a safety plan").click()
    doc.get_by_label("4. People I can ask for help").fill("My brother Tomás, 555 0199")
    doc.get_by_role("button", name="Save the plan").click()
    rosa.goto(base + "/me")
    rosa.get_by_role("link", name=re.compile("A questionnaire is due")).click()
    for number in range(1, 10):
        rosa.check(f"input[name=q{number}][value='1']")
    rosa.get_by_role("button", name="Send answers").click()
    rosa.wait_for_url(re.compile(r"/me/crisis$"))
    expect(rosa.locator("#crisis")).to_contain_text("Your care team has been told")
    expect(rosa.locator("#plan")).to_contain_text("My brother Tomás")
    fits_phone(rosa)
    shot(rosa, "space-crisis")
    doc.goto(base + "/dashboard")
    expect(doc.get_by_role("alert")).to_contain_text("Rosa Díaz")

    # The safety plan stays readable without a connection once loaded.
    rosa.goto(base + "/me/plan")
    rosa.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=15_000)
    rosa.reload()
    phone.set_offline(True)
    rosa.reload()
    expect(rosa.locator("#plan")).to_contain_text("My brother Tomás")
    phone.set_offline(False)

    # A lesson an admin adds as a file is given, read and marked done.
    (clinic.data_dir / "lessons").mkdir()
    (clinic.data_dir / "lessons" / "worry-time.md").write_text(LESSON, encoding="utf-8")
    doc.goto(record)
    doc.get_by_label("Give a lesson (library)").select_option("worry-time")
    doc.get_by_label("Homework (optional)").fill("Worry at 6 pm only")
    doc.get_by_role("button", name="Give the lesson").click()
    rosa.goto(base + "/me/lessons")
    rosa.get_by_role("link", name="Worry time").click()
    expect(rosa.locator("#homework")).to_contain_text("Worry at 6 pm only")
    fits_phone(rosa)
    rosa.get_by_role("button", name="Mark as done").click()
    expect(rosa.locator("#my-lessons")).to_contain_text("done")
    doc.goto(record)
    expect(doc.locator("#assigned-lessons")).to_contain_text("done")

    # Arabic, right to left, and it sticks.
    rosa.goto(base + "/me")
    rosa.get_by_label("Language").select_option("ar")
    rosa.get_by_role("button", name="Change").click()
    expect(rosa.locator("html")).to_have_attribute("dir", "rtl")
    expect(rosa.locator("h1")).to_have_text("مساحتك")
    fits_phone(rosa)
    shot(rosa, "space-arabic")
    rosa.goto(base + "/me/messages")
    expect(rosa.locator("html")).to_have_attribute("lang", "ar")

    # Her space passes axe-core as she reads it, right to left (a context that may inject it).
    checked = browser.new_context(ignore_https_errors=True, bypass_csp=True, viewport=PHONE)
    checked.add_cookies(phone.cookies())
    page = checked.new_page()
    found: list[str] = []
    for path in ("/me", "/me/messages", "/me/mood", "/me/plan", "/me/crisis", "/me/lessons"):
        page.goto(base + path)
        expect(page.locator("html")).to_have_attribute("dir", "rtl")
        found += serious_violations(page)
    checked.close()
    assert found == [], "\n".join(found)

    # The card is revoked (lost phone): the space closes and the card opens nothing.
    doc.goto(record)
    doc.get_by_role("link", name="Access card").click()
    doc.get_by_role("button", name=re.compile("Revoke the card")).click()
    expect(doc.locator("#card-state")).to_contain_text("No card opens")
    rosa.goto(base + "/me")
    rosa.wait_for_url(re.compile(r"/card$"))
    # Scanning the card again opens a new tab: the old card is refused, in her language.
    again = phone.new_page()
    again.goto(base + "/card#" + card_code.replace("-", ""))
    expect(again.locator("#card-error")).to_contain_text("رمز البطاقة هذا لا يفتح أي مساحة")
    assert "/me" not in again.url


def test_patient_space_without_javascript_on_data_saver(clinic: RunningBox, browser) -> None:
    """A phone with scripts off and the browser's data saver on (`Save-Data: on`) still opens
    the space with the typed card code, sends a message and a mood check, and reads the plan."""
    base = clinic.base_url
    doc = sign_in(browser.new_context(ignore_https_errors=True), base)
    doc.get_by_role("link", name="Schedule a group session").click()
    doc.get_by_label("Title").fill("Monday group")
    doc.get_by_label("Date and time").fill(starting_soon())
    doc.get_by_role("button", name="Schedule").click()
    code = doc.inner_text("#session-code").replace(" ", "")
    patient_joins(browser, base, code, "Iris Moreau", shots=False).context.close()
    record = _patient_page(doc, base, "Iris Moreau")
    doc.get_by_role("link", name="Write a safety plan").click()
    doc.get_by_label("4. People I can ask for help").fill("My neighbour Jo")
    doc.get_by_role("button", name="Save the plan").click()
    doc.goto(record)
    doc.get_by_role("link", name="Access card").click()
    doc.get_by_role("button", name="Issue a card").click()
    card_code = doc.inner_text("#card-code")

    phone = browser.new_context(
        ignore_https_errors=True,
        viewport=PHONE,
        java_script_enabled=False,
        extra_http_headers={"Save-Data": "on"},
    )
    iris = phone.new_page()
    iris.goto(base + "/card")
    iris.get_by_label("The code on your card").fill(card_code)
    iris.get_by_role("button", name="Open").click()
    iris.wait_for_url(re.compile(r"/me$"))
    expect(iris.locator("h1")).to_have_text("Your space")
    iris.get_by_role("link", name="Messages with your care team").click()
    iris.get_by_label("Write to your care team").fill("Sent with scripts off")
    iris.get_by_role("button", name="Send").click()
    expect(iris.locator("#thread")).to_contain_text("Sent with scripts off")
    iris.goto(base + "/me/mood")
    iris.check("input[name=mood][value='4']")
    iris.get_by_role("button", name="Send").click()
    expect(iris.locator(".error")).to_have_count(0)
    iris.goto(base + "/me/plan")
    expect(iris.locator("#plan")).to_contain_text("My neighbour Jo")
    fits_phone(iris)
    doc.goto(base + "/dashboard")
    expect(doc.locator("#unread-messages")).to_contain_text("Iris Moreau")
    phone.close()

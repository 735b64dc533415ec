"""The clinician's day in real headless Chromium against a real `clinicbox serve`.

A self-harm answer reaches the care team (dashboard and session banners, the "needs
follow-up" list until a clinician records what was done) and nobody else; patients who left,
were removed or were denied stay on the session page with their status, and the patient list
finds them by name. Desktop and a 390x844 phone viewport.
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
    PASSWORD,
    add_user,
    all_labelled,
    fresh_contexts,
    patient_joins,
    starting_soon,
)

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.pages, pytest.mark.timeout(180)]

PHONE_390 = {"width": 390, "height": 844}


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[RunningBox]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_user(data_dir, "dr.ada", "clinician")
    add_user(data_dir, "dr.bea", "clinician")
    box = start_box(data_dir)
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One Chromium for the module's tests (a launch is seconds on a busy machine)."""
    with playwright_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def browser(chromium: object) -> Iterator[object]:
    """The module's Chromium, with the contexts this test opens closed after it."""
    with fresh_contexts(chromium) as shared:
        yield shared


def signed_in(browser, base: str, username: str, viewport: dict[str, int] | None = None):
    context = browser.new_context(ignore_https_errors=True, viewport=viewport)
    page = context.new_page()
    page.goto(base + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    return page


def schedule(doc, title: str) -> tuple[str, str]:
    """Schedule a session starting soon, asking for the PHQ-9: (its page's URL, its join code)."""
    doc.get_by_role("link", name="Schedule a group session").click()
    doc.get_by_label("Title").fill(title)
    doc.get_by_label("Date and time").fill(starting_soon())
    doc.get_by_label("Capacity (people, including the facilitator)").fill("6")
    doc.get_by_role("button", name="Schedule").click()
    code = doc.inner_text("#session-code").replace(" ", "")
    # Patients may answer only what their clinician asked for. Wait for the page it leads
    # to: measured mid-load, before the stylesheet applies, a page is wider than it is.
    with doc.expect_navigation():
        doc.get_by_role("button", name="Send PHQ-9").click()
    return doc.url, code


def phone_fits(page) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE_390["width"], f"{page.url} is {width} px wide"
    all_labelled(page)


def answer_phq9(page, base: str, item9: int) -> None:
    page.goto(base + "/join/questionnaire/phq9")
    for number in range(1, 10):
        page.check(f"input[name=q{number}][value='{item9 if number == 9 else 1}']")
    page.get_by_role("button", name="Send answers").click()
    assert "Thank you" in page.inner_text("h1")


def test_a_self_harm_answer_reaches_the_care_team_until_followed_up(
    clinic: RunningBox, browser
) -> None:
    base = clinic.base_url
    doc = signed_in(browser, base, "dr.ada")
    session_url, code = schedule(doc, "Monday mood group")
    ana = patient_joins(browser, base, code, "Ana Lima", shots=False)
    doc.reload()
    doc.get_by_role("button", name="Admit Ana Lima").click()
    ana.wait_for_url(re.compile(r"/call$"), timeout=15_000)
    answer_phq9(ana, base, item9=2)

    # The dashboard and the session page both say so, as an alert with the patient's name.
    doc.goto(base + "/dashboard")
    banner = doc.get_by_role("alert")
    expect(banner).to_contain_text("Needs follow-up (1)")
    expect(banner).to_contain_text("Ana Lima")
    doc.goto(session_url)
    expect(doc.get_by_role("alert")).to_contain_text("Ana Lima")

    # A clinician outside the care team sees nothing of it.
    bea = signed_in(browser, base, "dr.bea")
    assert "Ana Lima" not in bea.inner_text("main")
    assert bea.locator("[role=alert]").count() == 0
    bea.get_by_role("link", name="Needs follow-up").click()
    expect(bea.locator("#follow-up-empty")).to_have_text("Nothing needs follow-up.")

    # On a phone: recording with no note is refused, naming what to fix and keeping the choice.
    phone = signed_in(browser, base, "dr.ada", viewport=PHONE_390)
    phone.goto(base + "/dashboard")
    phone.get_by_role("link", name="Record what was done").click()
    phone_fits(phone)
    phone.get_by_label("Followed up: safe for now, no referral").check()
    phone.get_by_role("button", name="Record follow-up").click()
    expect(phone.get_by_role("alert")).to_contain_text("Write what was done")
    assert phone.get_by_label("Followed up: safe for now, no referral").is_checked()
    phone.get_by_label("Note for Ana Lima (who spoke with them, what was agreed)").fill(
        "Phoned Ana at 15:10; safety plan agreed, sister with her tonight."
    )
    phone.get_by_role("button", name="Record follow-up").click()
    expect(phone.locator("#follow-up-empty")).to_have_text("Nothing needs follow-up.")
    phone_fits(phone)

    # Recorded: the banners are gone.
    doc.goto(base + "/dashboard")
    assert doc.locator("[role=alert]").count() == 0
    doc.goto(session_url)
    assert doc.locator("#follow-up-banner").count() == 0


def test_patients_do_not_vanish(clinic: RunningBox, browser) -> None:
    base = clinic.base_url
    doc = signed_in(browser, base, "dr.ada")
    _session_url, code = schedule(doc, "Wednesday anxiety group")
    doc.get_by_role("button", name="Start session").click()
    names = ("Ana Lima", "Ben Ng", "Cy Park", "Dee Rao")
    pages = {name: patient_joins(browser, base, code, name, shots=False) for name in names}
    doc.reload()
    for name in ("Ana Lima", "Ben Ng", "Dee Rao"):
        doc.get_by_role("button", name=f"Admit {name}").click()
    doc.get_by_role("button", name="Deny Cy Park").click()
    pages["Ana Lima"].wait_for_url(re.compile(r"/call$"), timeout=15_000)
    answer_phq9(pages["Ana Lima"], base, item9=0)
    # Ana leaves from her call page; Ben is removed by the clinician.
    pages["Ana Lima"].goto(base + "/call")
    pages["Ana Lima"].locator("#leave-btn").evaluate("(b) => b.form.submit()")
    pages["Ana Lima"].wait_for_url(re.compile(r"/join/wait$"))
    doc.reload()
    doc.get_by_role("button", name="Remove Ben Ng").click()

    people = doc.locator("#people")
    for name, status in (
        ("Ana Lima", "left"),
        ("Ben Ng", "removed"),
        ("Cy Park", "denied"),
        ("Dee Rao", "admitted"),
    ):
        row = people.locator("li", has_text=name)
        expect(row).to_have_attribute("data-status", status)
        expect(row.get_by_role("link", name=f"Scores of {name}")).to_be_visible()
    # Her scores are one click away although she left.
    people.get_by_role("link", name="Scores of Ana Lima").click()
    expect(doc.get_by_role("heading", level=1)).to_contain_text("Ana Lima")

    # The patient list finds them by part of a name, on a phone too.
    phone = signed_in(browser, base, "dr.ada", viewport=PHONE_390)
    phone.get_by_role("link", name="Patients").click()
    expect(phone.locator(".patient-card")).to_have_count(4)
    phone.get_by_label("Search by name or patient code").fill("lim")
    phone.get_by_role("button", name="Search").click()
    cards = phone.locator(".patient-card")
    expect(cards).to_have_count(1)
    expect(cards).to_contain_text("Ana Lima")
    expect(cards).to_contain_text(re.compile(r"PHQ-9 8/27 mild \(\d\d \w+ \d\d:\d\d\)"))
    expect(cards).to_contain_text("Wednesday anxiety group")
    expect(cards).to_contain_text("Last contact:")
    phone_fits(phone)
    phone.get_by_label("Search by name or patient code").fill("nobody-like-this")
    phone.get_by_role("button", name="Search").click()
    expect(phone.locator("#no-match")).to_contain_text("Nobody in your care matches")

    # A clinician outside the care team finds none of them.
    bea = signed_in(browser, base, "dr.bea")
    bea.goto(base + "/patients?q=a")
    expect(bea.locator(".patient-card")).to_have_count(0)


def test_errors_a_person_can_meet_say_what_to_do(clinic: RunningBox, browser) -> None:
    base = clinic.base_url
    context = browser.new_context(ignore_https_errors=True, viewport=PHONE_390)
    missing: list[str] = []
    context.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page = context.new_page()
    # A patient whose join cookie expired (or never joined on this phone).
    page.goto(base + "/join/wait")
    expect(page.get_by_role("heading", level=1)).to_have_text("This page is not open to you")
    expect(page.locator("#error-message")).to_have_text("Join the session with its code first.")
    page.get_by_role("link", name="Join a session with its code").click()
    expect(page.get_by_label("Session code (9 digits)")).to_be_visible()
    assert "Forbidden" not in page.content()
    phone_fits(page)
    # A mistyped address.
    reply = page.goto(base + "/sessions/not-a-session-id/notez")
    assert reply is not None and reply.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.locator("#error-message")).to_contain_text("Check the address")
    assert "requested URL" not in page.content()
    # The pages people use ask for no missing icon.
    assert [url for url in missing if "favicon" in url] == []
    doc = signed_in(browser, base, "dr.ada")
    doc.goto(base + "/sessions/not-a-session-id")
    expect(doc.locator("#error-message")).to_have_text("There is no such session.")
    doc.get_by_role("link", name="Back to your dashboard").click()
    doc.wait_for_url(re.compile(r"/dashboard$"))
    icon = doc.evaluate("() => new URL(document.querySelector('link[rel=icon]').href).pathname")
    assert icon == "/static/favicon.svg"


def test_dates_and_small_things(clinic: RunningBox, browser) -> None:
    base = clinic.base_url
    doc = signed_in(browser, base, "dr.ada", viewport=PHONE_390)
    # A date that has gone is refused, with the form kept.
    doc.get_by_role("link", name="Schedule a group session").click()
    doc.get_by_label("Title").fill("Typo year group")
    doc.get_by_label("Date and time").fill("2020-01-15T10:00")
    doc.get_by_role("button", name="Schedule").click()
    expect(doc.get_by_role("alert")).to_contain_text("15 Jan 2020 has passed")
    expect(doc.get_by_label("Title")).to_have_value("Typo year group")
    doc.goto(base + "/dashboard")
    session_url, code = schedule(doc, "Friday carers group")
    # The invite link wraps on a phone instead of widening the page.
    phone_fits(doc)
    ana = patient_joins(browser, base, code, "Ana Lima", shots=False)
    doc.reload()
    doc.get_by_role("button", name="Admit Ana Lima").click()
    ana.wait_for_url(re.compile(r"/call$"), timeout=15_000)
    # Two PHQ-9s on the same day (18 of 27: moderately severe): the patient answers once in
    # the session (a second answer there is refused), the clinician enters the other.
    ana.goto(base + "/join/questionnaire/phq9")
    for number in range(1, 10):
        ana.check(f"input[name=q{number}][value='{3 if number <= 6 else 0}']")
    ana.get_by_role("button", name="Send answers").click()
    doc.goto(session_url)
    doc.get_by_role("link", name="Scores of Ana Lima").click()
    scores_url = doc.url
    doc.get_by_role("link", name=re.compile(r"Enter a new PHQ-9")).click()
    for number in range(1, 10):
        doc.check(f"input[name=q{number}][value='{3 if number <= 6 else 0}']")
    doc.get_by_role("button", name="Send answers").click()
    doc.goto(scores_url)
    times = doc.locator("#h-phq9 ~ table tbody td:first-child").all_inner_texts()
    assert len(times) == 2 and all(re.fullmatch(r"\d\d \w{3} \d{4} \d\d:\d\d", t) for t in times)
    # Every band name is drawn inside the chart (none cut at its right edge).
    overflow = doc.evaluate(
        """() => Array.from(document.querySelectorAll("figure.chart svg")).flatMap((svg) => {
          const width = svg.viewBox.baseVal.width;
          return Array.from(svg.querySelectorAll("text"))
            .filter((t) => t.getBBox().x + t.getBBox().width > width)
            .map((t) => t.textContent);
        })"""
    )
    assert overflow == []
    expect(doc.locator("#h-phq9 ~ figure svg")).to_contain_text("moderately severe")
    phone_fits(doc)

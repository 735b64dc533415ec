"""What a hostile or unlucky patient can no longer do on the join pages (issue #19).

Guessing session codes, joining long before or after a session, reading or answering after
being denied or removed, sending questionnaires nobody asked for, names that disguise text,
and invite links built from a forged Host header.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from appliance.box import Box
from appliance.clinical.join_window import JoinWindow
from appliance.clinical.session_codes import derive_code, join_code_of
from appliance.media.join_token import verify
from tests.web.conftest import csrf_from, sign_in
from tests.web.test_portal import _ask, _join, _schedule
from web import create_app
from web.join_throttle import JoinThrottle, WindowCounter

PHQ9_WITH_RISK = {f"q{i}": "1" for i in range(1, 10)}


def _client(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _try_code(client: FlaskClient, code: str, name: str = "Ana") -> tuple[int, str]:
    token = csrf_from(client, "/join")
    reply = client.post("/join", data={"csrf_token": token, "code": code, "name": name})
    return reply.status_code, reply.get_data(as_text=True)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**9:09d}"


def test_codes_are_nine_digits_and_six_digit_ones_are_refused(app: Flask) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    _, code = _schedule(clinician)
    assert re.fullmatch(r"\d{9}", code)
    status, page = _try_code(app.test_client(), code[:6])
    assert status == 400 and "The session code is 9 digits" in page
    # Typed with spaces or dashes, as read out over the phone, it still works.
    status, page = _try_code(app.test_client(), f"{code[:3]} {code[3:6]}-{code[6:]}")
    assert status == 200 and "Before you join" in page
    # Digits from other scripts are not session codes.
    status, _ = _try_code(app.test_client(), "\u0661" * 9)
    assert status == 400


def test_consent_page_shows_no_session_title(app: Flask) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    _, code = _schedule(clinician)
    status, page = _try_code(app.test_client(), code)
    assert status == 200 and "Before you join" in page
    assert "Tuesday grief group" not in page
    assert "a group session at your clinic" in page


def test_wrong_codes_are_throttled_per_client(app: Flask) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    _, code = _schedule(clinician)
    guesser = _client(app, "203.0.113.7")
    for _ in range(10):
        status, _page = _try_code(guesser, _wrong(code))
        assert status == 404
    status, page = _try_code(guesser, _wrong(code))
    assert status == 429 and "Too many tries with a wrong code" in page
    # Over its budget, the guesser is not told even when it hits the right code.
    status, page = _try_code(guesser, code)
    assert status == 429 and "Before you join" not in page
    # Someone else, elsewhere, joins as usual.
    status, page = _try_code(_client(app, "198.51.100.20"), code)
    assert status == 200 and "Before you join" in page


def test_box_wide_guessing_leaves_first_time_right_codes_working(app: Flask) -> None:
    app.extensions["clinicbox.join_throttle"] = JoinThrottle(per_client=3, box_wide=4)
    clinician = app.test_client()
    sign_in(clinician)
    _, code = _schedule(clinician)
    for n in range(4):  # four addresses, one wrong code each: the box's budget is spent
        assert _try_code(_client(app, f"203.0.113.{n}"), _wrong(code))[0] == 404
    # One of them, now trying the right code, waits; a patient typing it right gets in.
    assert _try_code(_client(app, "203.0.113.1"), code)[0] == 429
    assert _try_code(_client(app, "198.51.100.9"), code)[0] == 200


def test_a_right_code_is_throttled_per_session(app: Flask) -> None:
    app.extensions["clinicbox.join_throttle"] = JoinThrottle(per_session=3)
    clinician = app.test_client()
    sign_in(clinician)
    _, code = _schedule(clinician)
    for n in range(3):
        assert _try_code(_client(app, f"198.51.100.{n}"), code)[0] == 200
    status, page = _try_code(_client(app, "198.51.100.50"), code)
    assert status == 429 and "Many people are joining this session" in page


def test_throttle_memory_is_bounded() -> None:
    now = [0.0]
    counter = WindowCounter(600, max_keys=100, clock=lambda: now[0])
    for n in range(10_000):
        counter.add(f"client-{n}")
    assert len(counter) == 100
    assert counter.count("client-9999") == 1 and counter.count("client-0") == 0
    counter.add("client-9999")
    assert counter.count("client-9999") == 2
    now[0] = 601.0  # a new window forgives
    assert counter.count("client-9999") == 0
    throttle = JoinThrottle(max_keys=50)
    for n in range(5_000):
        throttle.wrong_code(f"10.0.{n // 256}.{n % 256}")
    assert throttle.remembered() <= 100


def test_codes_open_only_around_the_session(app: Flask, box: Box) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    later = (datetime.now() + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")
    early_url, early_code = _schedule(clinician, starts_at=later)
    status, page = _try_code(app.test_client(), early_code)
    assert status == 403 and "opens for joining at" in page and "30 minutes before" in page
    assert "Before you join" not in page
    # The facilitator starting it early opens it early.
    token = csrf_from(clinician, early_url)
    clinician.post(early_url + "/state", data={"csrf_token": token, "action": "start"})
    assert _try_code(app.test_client(), early_code)[0] == 200

    # A session that started three hours ago. The form refuses a start on an earlier day, and
    # between 00:00 and 03:00 three hours ago is yesterday: schedule it ahead, then move it.
    late_url, late_code = _schedule(clinician, starts_at=later)
    GroupSession = box.store.GroupSession  # noqa: N806 - the store's model class
    moved = (
        GroupSession.update(starts_at=datetime.now() - timedelta(hours=3))
        .where(GroupSession.id == late_url.rstrip("/").rsplit("/", 1)[-1])
        .execute()
    )
    assert moved == 1
    status, page = _try_code(app.test_client(), late_code)
    assert status == 403 and "Joining this session closed at" in page
    # A wrong guess and a closed session are told apart only for a right code: neither counts
    # as a wrong try, so the throttle is untouched.
    assert _try_code(app.test_client(), late_code)[0] == 403


def test_join_window_is_configurable() -> None:
    start = datetime(2026, 12, 7, 10, 0)
    window = JoinWindow(opens_before_min=5, closes_after_min=15)
    assert window.refusal(start, "scheduled", now=start - timedelta(minutes=6))
    assert window.refusal(start, "scheduled", now=start - timedelta(minutes=5)) is None
    assert window.refusal(start, "live", now=start + timedelta(minutes=14)) is None
    assert "closed at 10:15" in window.refusal(start, "live", now=start + timedelta(minutes=15))


def test_six_digit_codes_of_open_sessions_are_replaced_at_start(app: Flask, box: Box) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, _ = _schedule(clinician)
    group = box.store.GroupSession.get_by_id(session_url.rsplit("/", 1)[1])
    old = f"{int(derive_code(app.config['SECRET_KEY'], group.id)) % 10**6:06d}"
    group.set_join_code(old)
    group.save()
    assert join_code_of(group, app.config["SECRET_KEY"]) is None
    restarted = create_app(box, {"TESTING": True})
    group = box.store.GroupSession.get_by_id(group.id)
    code = join_code_of(group, restarted.config["SECRET_KEY"])
    assert code is not None and len(code) == 9
    assert _try_code(restarted.test_client(), code)[0] == 200


def test_denied_or_removed_patient_reads_and_answers_nothing(app: Flask, box: Box) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    ana, cy = _join(app, code, "Ana"), _join(app, code, "Cy")
    token = csrf_from(clinician, session_url)
    ana_token, cy_token = csrf_from(ana, "/join"), csrf_from(cy, "/join")
    clinician.post(session_url + "/broadcast", data={"csrf_token": token, "message": "Hello"})
    clinician.post(
        session_url + "/poll",
        data={"csrf_token": token, "question": "Sleep?", "options": "Better\nWorse"},
    )
    _ask(clinician, session_url, "phq9")
    by_name = {a.display_name: a.id for a in box.store.Attendance.select()}
    clinician.post(
        session_url + "/admit",
        data={"csrf_token": token, "action": "deny", "attendance": by_name["Cy"]},
    )
    clinician.post(
        session_url + "/admit",
        data={"csrf_token": token, "action": "admit", "attendance": by_name["Ana"]},
    )
    clinician.post(
        session_url + "/admit",
        data={"csrf_token": token, "action": "remove", "attendance": by_name["Ana"]},
    )
    for patient, csrf in ((ana, ana_token), (cy, cy_token)):
        state = patient.get("/join/state")
        assert state.status_code == 403
        assert state.get_json() == {
            "error": "Forbidden",
            "status": "removed",
            "message": "You are no longer in this session.",
        }
        vote = patient.post("/join/poll", data={"csrf_token": csrf, "choice": "0"})
        assert vote.status_code == 403
        form = patient.get("/join/questionnaire/phq9")
        assert form.status_code == 403
        sent = patient.post("/join/questionnaire/phq9", data={"csrf_token": csrf, **PHQ9_WITH_RISK})
        assert sent.status_code == 403
        page = patient.get("/join/wait").get_data(as_text=True)
        assert "You were not let in" in page and "Hello" not in page and "Sleep?" not in page
    assert box.store.QuestionnaireResponse.select().count() == 0
    assert box.store.RiskFlag.select().count() == 0
    assert sum(live_counts(box)) == 0


def live_counts(box: Box) -> list[int]:
    return box.store.SessionLive.get().poll["counts"]


def test_questionnaires_only_when_asked_and_once(app: Flask, box: Box) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    ana = _join(app, code, "Ana")
    token = csrf_from(ana, "/join")
    unasked = ana.post("/join/questionnaire/phq9", data={"csrf_token": token, **PHQ9_WITH_RISK})
    assert unasked.status_code == 404
    assert "has not asked for this questionnaire" in unasked.get_data(as_text=True)
    assert box.store.RiskFlag.select().count() == 0
    _ask(clinician, session_url, "phq9")
    replies = [
        ana.post(
            "/join/questionnaire/phq9", data={"csrf_token": token, **PHQ9_WITH_RISK}
        ).status_code
        for _ in range(5)
    ]
    assert replies == [200, 409, 409, 409, 409]
    assert box.store.QuestionnaireResponse.select().count() == 1
    assert box.store.RiskFlag.select().count() == 1
    assert "already sent" in ana.get("/join/questionnaire/phq9").get_data(as_text=True)
    # Asked for PHQ-9 only: the GAD-7 stays closed.
    assert ana.get("/join/questionnaire/gad7").status_code == 404


def test_names_with_direction_or_control_characters_are_refused(app: Flask, box: Box) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    _, code = _schedule(clinician)
    for name in ("Ana\u202egnp.exe", "Ana\x00", "\u2066Ben\u2069", "Cy\u200b"):
        status, page = _try_code(app.test_client(), code, name=name)
        assert status == 400, name
        assert "hidden or control character" in page
        patient = app.test_client()
        token = csrf_from(patient, "/join")
        reply = patient.post(
            "/join/consent", data={"csrf_token": token, "code": code, "name": name, "agree": "yes"}
        )
        assert reply.status_code == 400
        assert "hidden or control character" in reply.get_data(as_text=True)
    assert box.store.Attendance.select().count() == 0
    # Scripts that need joiners are welcome.
    assert _try_code(app.test_client(), code, name="\u0dc1\u0dca\u200d\u0dbb\u0dd3")[0] == 200


def test_invite_link_uses_the_configured_public_url(app: Flask, box: Box) -> None:
    clinician = app.test_client()
    clinician.environ_base["HTTP_HOST"] = "evil.example"  # every request, sign-in included
    sign_in(clinician)
    session_url, _ = _schedule(clinician)
    page = clinician.get(session_url).get_data(as_text=True)
    assert "Invite link" in page and "evil.example" not in page
    assert 'href="https://testbox.local:8443/i/' in page
    box.settings = dataclasses.replace(box.settings, public_url="https://clinic.example.org/")
    page = clinician.get(session_url).get_data(as_text=True)
    assert 'href="https://clinic.example.org/i/' in page


def test_huge_facilitator_id_is_a_clear_error(app: Flask) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    token = csrf_from(clinician, "/sessions/new")
    reply = clinician.post(
        "/sessions/new",
        data={
            "csrf_token": token,
            "title": "Group",
            "starts_at": "2026-12-24T10:00",
            "facilitator": "9" * 40,
            "capacity": "4",
        },
    )
    assert reply.status_code == 400
    assert "Choose the facilitator" in reply.get_data(as_text=True)


def test_odd_invite_tokens_are_a_plain_not_found(app: Flask) -> None:
    for token in ("\u00e9" * 10, "x" * 5000, "..%2E%2E"):
        reply = app.test_client().get(f"/i/{token}")
        assert reply.status_code == 404
        assert "invite link has expired" in reply.get_data(as_text=True)


def test_a_patients_join_token_ends_with_the_session(app: Flask, box: Box) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    ana = _join(app, code, "Ana")
    token = csrf_from(clinician, session_url)
    clinician.post(session_url + "/admit", data={"csrf_token": token, "action": "admit_all"})
    group = box.store.GroupSession.get_by_id(session_url.rsplit("/", 1)[1])
    started = datetime.now() - timedelta(hours=1)
    group.starts_at = started
    group.save()
    page = ana.get("/call").get_data(as_text=True)
    claims = verify(box, re.search(r'data-token="([^"]+)"', page).group(1))
    # Join window (120 min) + 2 h overrun after the start: 3 h from now, not 4.
    ends = (started + timedelta(minutes=120) + timedelta(hours=2)).timestamp()
    assert claims.participant_id.startswith("attendance/") and claims.role == "patient"
    assert ends - 5 <= claims.expires_at <= ends + 5
    group.starts_at = datetime.now() - timedelta(hours=5)
    group.save()
    late = ana.get("/call")
    assert late.status_code == 403 and "time is over" in late.get_data(as_text=True)


def test_simultaneous_questionnaires_store_one(app: Flask, box: Box) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    ana = _join(app, code, "Ana")
    _ask(clinician, session_url, "phq9")
    token = csrf_from(ana, "/join")
    cookie = ana.get_cookie("session")
    assert cookie is not None
    tabs = []
    for _ in range(8):  # eight tabs of the same browser, sending at the same instant
        tab = app.test_client()
        tab.set_cookie("session", cookie.value)
        tabs.append(tab)
    start = threading.Barrier(len(tabs))

    def send(tab: FlaskClient) -> int:
        start.wait()
        return tab.post(
            "/join/questionnaire/phq9", data={"csrf_token": token, **PHQ9_WITH_RISK}
        ).status_code

    with ThreadPoolExecutor(len(tabs)) as pool:
        replies = sorted(pool.map(send, tabs))
    assert replies == [200] + [409] * 7
    assert box.store.QuestionnaireResponse.select().count() == 1
    assert box.store.RiskFlag.select().count() == 1

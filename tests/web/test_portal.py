"""Scheduling, joining, waiting room, questionnaires, score chart and notes over Flask."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta
from xml.etree import ElementTree

import pytest

from appliance.clinical.questionnaires import GAD7, PHQ9, IncompleteAnswers, score
from tests.web.conftest import csrf_from, sign_in
from web.chart import score_chart


@pytest.mark.parametrize(
    ("total", "band"),
    [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"),
     (14, "moderate"), (15, "moderately severe"), (19, "moderately severe"), (20, "severe"),
     (27, "severe")],
)
def test_phq9_bands(total, band):
    answers = [3] * (total // 3) + ([total % 3] if total % 3 else [])
    answers += [0] * (9 - len(answers))
    # Keep item 9 at 0 unless all items are needed to reach the total.
    answers = sorted(answers, reverse=True)
    result = score(PHQ9, {f"q{i + 1}": str(a) for i, a in enumerate(answers)})
    assert (result.score, result.severity) == (total, band)
    assert result.risk_flag == (answers[8] > 0)


def test_gad7_bands_and_item9_risk():
    assert score(GAD7, {f"q{i}": "3" for i in range(1, 8)}).severity == "severe"
    assert score(GAD7, {f"q{i}": "2" for i in range(1, 8)}).severity == "moderate"
    assert GAD7.band(15).name == "severe" and GAD7.band(9).name == "mild"
    only_item9 = {f"q{i}": "0" for i in range(1, 10)} | {"q9": "1"}
    result = score(PHQ9, only_item9)
    assert (result.score, result.severity, result.risk_flag) == (1, "minimal", True)


def test_missing_or_invalid_answers_are_listed():
    form = {f"q{i}": "1" for i in range(1, 10)} | {"q3": "", "q7": "4"}
    with pytest.raises(IncompleteAnswers) as err:
        score(PHQ9, form)
    assert err.value.missing == [3, 7]
    assert str(err.value) == "Please answer questions 3, 7."


def test_score_chart_is_valid_svg_with_bands_and_points():
    points = [(datetime(2026, 11, d), s) for d, s in ((1, 22), (8, 16), (15, 8))]
    svg = score_chart(PHQ9, points)
    root = ElementTree.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img"
    assert len(root.findall(f"{ns}rect")) == 5
    assert len(root.findall(f"{ns}circle")) == 3
    labels = [t.text for t in root.findall(f"{ns}text")]
    assert {"minimal", "mild", "moderate", "moderately severe", "severe"} <= set(labels)
    assert "Latest 8 of 27 (mild)" in root.find(f"{ns}desc").text
    # Higher scores are drawn higher up the chart.
    ys = [float(c.get("cy")) for c in root.findall(f"{ns}circle")]
    assert ys[0] < ys[1] < ys[2]
    assert len(svg) < 4000
    assert "No scores yet" in score_chart(GAD7, [])


def _soon(minutes: int = 10) -> str:
    """A start time `minutes` from now in the clinic's local time, as the schedule form takes it."""
    return (datetime.now() + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M")


def _schedule(client, keep_chat="no", starts_at=None):
    token = csrf_from(client, "/sessions/new")
    reply = client.post("/sessions/new", data={
        "csrf_token": token, "title": "Tuesday grief group", "starts_at": starts_at or _soon(),
        "facilitator": "1", "capacity": "4", "keep_chat": keep_chat,
    })
    assert reply.status_code == 302
    page = client.get(reply.headers["Location"]).get_data(as_text=True)
    code = re.search(r'id="session-code">(\d{3}) (\d{3}) (\d{3})<', page)
    return reply.headers["Location"], "".join(code.groups())


def _ask(clinician, session_url, instrument):
    token = csrf_from(clinician, session_url)
    reply = clinician.post(session_url + "/ask",
                           data={"csrf_token": token, "instrument": instrument})
    assert reply.status_code == 302


def _join(app, code, name):
    patient = app.test_client()
    token = csrf_from(patient, "/join")
    consent_page = patient.post("/join", data={"csrf_token": token, "code": code, "name": name})
    assert consent_page.status_code == 200
    assert "Before you join" in consent_page.get_data(as_text=True)
    refused = patient.post("/join/consent", data={"csrf_token": token, "code": code, "name": name})
    assert refused.status_code == 400
    joined = patient.post(
        "/join/consent", data={"csrf_token": token, "code": code, "name": name, "agree": "yes"}
    )
    assert joined.headers["Location"] == "/join/wait"
    return patient


def test_schedule_validation_messages(app):
    client = app.test_client()
    sign_in(client)
    token = csrf_from(client, "/sessions/new")
    reply = client.post("/sessions/new", data={
        "csrf_token": token, "title": "", "starts_at": "2031-11-24T10:00+02:00",
        "facilitator": "99",
        "capacity": "100",
    })
    text = reply.get_data(as_text=True)
    assert reply.status_code == 400
    for message in ("Give the session a title", "Enter the start date", "Capacity must be",
                    "Choose the facilitator"):
        assert message in text


def test_join_consent_waiting_room_admit_and_deny(app, box):
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    bad = app.test_client()
    token = csrf_from(bad, "/join")
    assert bad.post("/join", data={"csrf_token": token, "code": "12345", "name": "A"}
                    ).status_code == 400
    ana = _join(app, code, "Ana")
    ben = _join(app, code, "Ben")
    cy = _join(app, code, "Cy")
    assert "will let you in soon" in ana.get("/join/wait").get_data(as_text=True)
    assert box.store.Consent.select().count() == 3
    page = clinician.get(session_url).get_data(as_text=True)
    assert "Admit all (3)" in page
    cy_id = re.search(r'<span>Cy</span>.*?name="attendance" value="([0-9a-f-]+)"', page,
                      re.S).group(1)
    token = csrf_from(clinician, session_url)
    admit_url = session_url + "/admit"
    clinician.post(admit_url, data={"csrf_token": token, "action": "deny", "attendance": cy_id})
    room = clinician.get(session_url + "/waiting")
    assert '<meta http-equiv="refresh" content="5">' in room.get_data(as_text=True)
    assert "Admit all (2)" in room.get_data(as_text=True)
    reply = clinician.post(admit_url, data={"csrf_token": token, "action": "admit_all",
                                            "back": "waiting"})
    assert reply.headers["Location"] == session_url + "/waiting"
    assert "Nobody is waiting" in clinician.get(session_url + "/waiting").get_data(as_text=True)
    assert ana.get("/join/wait").headers["Location"] == "/call"
    assert ben.get("/call").status_code == 200
    assert "did not admit you" in cy.get("/join/wait").get_data(as_text=True)
    assert cy.get("/call").headers["Location"] == "/join/wait"
    # Capacity 4 = the facilitator + 3: two admitted, one denied, so one more may wait.
    _join(app, code, "Dee")
    full = app.test_client()
    token = csrf_from(full, "/join")
    reply = full.post("/join/consent",
                      data={"csrf_token": token, "code": code, "name": "Eve", "agree": "yes"})
    assert reply.status_code == 409
    assert "full" in reply.get_data(as_text=True)


def test_patient_questionnaire_scored_and_missing_answer_stores_nothing(app, box):
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    patient = _join(app, code, "Ana")
    _ask(clinician, session_url, "phq9")
    token = csrf_from(patient, "/join/questionnaire/phq9")
    answers = {f"q{i}": str(a) for i, a in enumerate([3, 2, 2, 1, 1, 1, 0, 0, 1], start=1)}
    partial = dict(answers)
    del partial["q4"]
    reply = patient.post("/join/questionnaire/phq9", data={"csrf_token": token, **partial})
    assert reply.status_code == 400
    assert "Please answer question 4." in reply.get_data(as_text=True)
    assert box.store.QuestionnaireResponse.select().count() == 0
    reply = patient.post("/join/questionnaire/phq9", data={"csrf_token": token, **answers})
    assert reply.status_code == 200
    saved = box.store.QuestionnaireResponse.get()
    assert (saved.kind, saved.score, saved.severity) == ("PHQ9", 11, "moderate")
    assert saved.items == [3, 2, 2, 1, 1, 1, 0, 0, 1]
    flag = box.store.RiskFlag.get()
    assert flag.source_id == saved.id and flag.patient_id == saved.patient_id
    page = clinician.get(f"/patients/{saved.patient_id}").get_data(as_text=True)
    assert "<svg" in page and "Latest 11 of 27 (moderate)" in page
    assert "risk: item 9" in page


def test_notes_are_encrypted_at_rest_and_views_are_audited(app, box):
    clinician = app.test_client()
    sign_in(clinician)
    session_url, _ = _schedule(clinician)
    token = csrf_from(clinician, session_url + "/notes")
    empty = clinician.post(session_url + "/notes", data={"csrf_token": token, "body": " "})
    assert empty.status_code == 400
    assert box.store.SessionNote.select().count() == 0
    clinician.post(session_url + "/notes",
                   data={"csrf_token": token, "body": "Marigold spoke about her brother"})
    assert "Marigold spoke" in clinician.get(session_url + "/notes").get_data(as_text=True)
    raw = sqlite3.connect(box.settings.database_path)
    dump = "\n".join(raw.iterdump())
    raw.close()
    assert "Marigold" not in dump and "Tuesday grief" not in dump
    note = box.store.SessionNote.get()
    group_id = session_url.rsplit("/", 1)[1]
    actions = [(a.action, a.target) for a in box.store.AuditLog.select()]
    assert ("record.create", f"session_note/{note.id}") in actions
    assert ("record.read", f"group_session/{group_id}/notes") in actions
    assert ("record.read", f"group_session/{group_id}") in actions


def test_invite_link_and_code_survive_only_as_hashes(app, box):
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    page = clinician.get(session_url).get_data(as_text=True)
    invite = re.search(
        r'id="invite-link" href="https://testbox.local:8443(/i/[\w-]+)"', page
    ).group(1)
    form = app.test_client().get(invite).get_data(as_text=True)
    assert f'value="{code}"' in form
    assert app.test_client().get("/i/not-a-real-token").status_code == 404
    raw = sqlite3.connect(box.settings.database_path)
    dump = "\n".join(raw.iterdump())
    raw.close()
    assert invite.rsplit("/", 1)[1] not in dump
    # Ending the session closes both ways in.
    token = csrf_from(clinician, session_url)
    ending = {"csrf_token": token, "action": "end", "confirm": "yes"}
    clinician.post(session_url + "/state", data=ending)
    assert app.test_client().get(invite).status_code == 404
    patient = app.test_client()
    token = csrf_from(patient, "/join")
    reply = patient.post("/join", data={"csrf_token": token, "code": code, "name": "Ana"})
    assert reply.status_code == 404


def test_ask_questionnaire_leave_and_remove(app, box):
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    ana = _join(app, code, "Ana")
    ben = _join(app, code, "Ben")
    token = csrf_from(clinician, session_url)
    assert "asked you" not in ana.get("/join/wait").get_data(as_text=True)
    assert clinician.post(session_url + "/ask", data={"csrf_token": token, "instrument": "x"}
                          ).status_code == 400
    clinician.post(session_url + "/ask", data={"csrf_token": token, "instrument": "gad7"})
    waiting = ana.get("/join/wait").get_data(as_text=True)
    assert "asked you to fill in" in waiting and "/join/questionnaire/gad7" in waiting
    clinician.post(session_url + "/admit", data={"csrf_token": token, "action": "admit_all"})
    assert "/join/questionnaire/gad7" in ana.get("/call").get_data(as_text=True)
    ana_token = csrf_from(ana, "/join/questionnaire/gad7")
    assert ana.post("/join/leave", data={"csrf_token": ana_token}).status_code == 302
    after = ana.get("/join/wait").get_data(as_text=True)
    assert "You left the session" in after and "/join/questionnaire/gad7" in after
    page = clinician.get(session_url).get_data(as_text=True)
    ben_id = re.search(r'<span>Ben</span>.*?name="attendance" value="([0-9a-f-]+)"', page,
                       re.S).group(1)
    clinician.post(session_url + "/admit",
                   data={"csrf_token": token, "action": "remove", "attendance": ben_id})
    assert ben.get("/call").headers["Location"] == "/join/wait"
    assert "removed you" in ben.get("/join/wait").get_data(as_text=True)
    removed = box.store.Attendance.get_by_id(ben_id)
    assert removed.status == "removed" and removed.left_at is not None


def test_broadcast_poll_and_breakout_rooms(app):
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    patients = [_join(app, code, name) for name in ("Ana", "Ben", "Cy")]
    token = csrf_from(clinician, session_url)
    clinician.post(session_url + "/admit", data={"csrf_token": token, "action": "admit_all"})
    ana = patients[0]
    assert ana.get("/join/state").get_json() == {
        "status": "admitted", "session": "scheduled", "asked": [], "message": "",
        "poll": None, "room": None}
    too_long = clinician.post(session_url + "/broadcast",
                              data={"csrf_token": token, "message": "x" * 201})
    assert too_long.status_code == 400
    clinician.post(session_url + "/broadcast",
                   data={"csrf_token": token, "message": "Back in five minutes"})
    bad_poll = clinician.post(session_url + "/poll", data={
        "csrf_token": token, "question": "How are you?", "options": "only one"})
    assert bad_poll.status_code == 400
    clinician.post(session_url + "/poll", data={
        "csrf_token": token, "question": "How are you today?", "options": "Better\nSame\nWorse\n"})
    state = ana.get("/join/state").get_json()
    assert state["message"] == "Back in five minutes"
    assert state["poll"]["options"] == ["Better", "Same", "Worse"]
    ana_token = csrf_from(ana, "/join")
    json_headers = {"Accept": "application/json", "X-CSRF-Token": ana_token}
    assert ana.post("/join/poll", data={"choice": "7"}, headers=json_headers).status_code == 400
    assert ana.post("/join/poll", data={"choice": "0"}, headers=json_headers).get_json() == {
        "ok": True}
    ben_token = csrf_from(patients[1], "/join")
    patients[1].post("/join/poll", data={"csrf_token": ben_token, "choice": "2"})
    assert ana.get("/join/state").get_json()["poll"]["voted"] == 0
    page = clinician.get(session_url).get_data(as_text=True)
    assert "2 answered" in page and "Better: 1" in page and "Worse: 1" in page
    clinician.post(session_url + "/poll", data={"csrf_token": token, "action": "close"})
    assert ana.get("/join/state").get_json()["poll"] is None
    assert ana.post("/join/poll", data={"choice": "1"}, headers=json_headers).status_code == 400
    clinician.post(session_url + "/breakout", data={"csrf_token": token, "rooms": "2"})
    rooms = [p.get("/join/state").get_json()["room"] for p in patients]
    assert sorted(rooms) == [1, 1, 2]
    assert clinician.post(session_url + "/breakout", data={"csrf_token": token, "rooms": "9"}
                          ).status_code == 400
    clinician.post(session_url + "/breakout", data={"csrf_token": token, "action": "back"})
    assert all(p.get("/join/state").get_json()["room"] is None for p in patients)
    ending = {"csrf_token": token, "action": "end", "confirm": "yes"}
    clinician.post(session_url + "/state", data=ending)
    assert ana.get("/join/state").get_json()["session"] == "ended"


def test_second_join_is_matched_to_the_earlier_patient(app, box):
    clinician = app.test_client()
    sign_in(clinician)
    first_url, first_code = _schedule(clinician)
    ana = _join(app, first_code, "Ana")
    token = csrf_from(clinician, first_url)
    clinician.post(first_url + "/admit", data={"csrf_token": token, "action": "admit_all"})
    _ask(clinician, first_url, "gad7")
    answers = {f"q{i}": "2" for i in range(1, 8)}
    ana_token = csrf_from(ana, "/join/questionnaire/gad7")
    ana.post("/join/questionnaire/gad7", data={"csrf_token": ana_token, **answers})
    earlier = box.store.QuestionnaireResponse.get().patient
    second_url, second_code = _schedule(clinician)
    again = _join(app, second_code, "ana ")
    clinician.post(second_url + "/admit", data={"csrf_token": token, "action": "admit_all"})
    _ask(clinician, second_url, "gad7")
    again_token = csrf_from(again, "/join/questionnaire/gad7")
    again.post("/join/questionnaire/gad7",
               data={"csrf_token": again_token, **answers, "q1": "0"})
    page = clinician.get(second_url).get_data(as_text=True)
    assert f"Same person as {earlier.code}" in page
    attendance = re.search(r'name="attendance" value="([0-9a-f-]+)"', page).group(1)
    bad = clinician.post(second_url + "/match", data={
        "csrf_token": token, "attendance": attendance, "patient": "nope"})
    assert bad.status_code == 400
    clinician.post(second_url + "/match", data={
        "csrf_token": token, "attendance": attendance, "patient": earlier.id})
    scores = [r.score for r in box.store.QuestionnaireResponse.select().where(
        box.store.QuestionnaireResponse.patient == earlier)]
    assert sorted(scores) == [12, 14]
    assert box.store.Attendance.get_by_id(attendance).patient_id == earlier.id
    history = clinician.get(f"/patients/{earlier.id}").get_data(as_text=True)
    assert history.count("<circle") == 2
    # The patient's own page keeps working after the match.
    assert again.get("/call").status_code == 200


def test_schedule_refuses_a_day_that_has_passed(app):
    client = app.test_client()
    sign_in(client)
    token = csrf_from(client, "/sessions/new")
    reply = client.post("/sessions/new", data={
        "csrf_token": token, "title": "Typo year", "starts_at": "2020-01-15T10:00",
        "facilitator": "1", "capacity": "4",
    })
    assert reply.status_code == 400
    assert "The date 15 Jan 2020 has passed" in reply.get_data(as_text=True)


def test_chart_axis_tells_same_day_scores_apart():
    svg = score_chart(PHQ9, [(datetime(2031, 1, 9, 10, 5), 18), (datetime(2031, 1, 9, 15, 40), 9)])
    assert "09 Jan 10:05" in svg and "09 Jan 15:40" in svg

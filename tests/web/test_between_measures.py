"""Measures between sessions, the daily mood check, the safety plan, the crisis page and
reminders, through a patient's access card and their clinician's pages."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from appliance.box import Box
from tests.web.conftest import csrf_from, sign_in
from tests.web.test_patient_space import _issue, _open_space, _patient_in_care

PHQ9_ITEM9 = {f"q{n}": "1" for n in range(1, 10)}


def _set_up(app: Flask, box: Box) -> tuple[FlaskClient, FlaskClient, str]:
    patient_id = _patient_in_care(box, app)
    doctor = app.test_client()
    sign_in(doctor)
    patient, _status = _open_space(app, _issue(doctor, patient_id))
    return doctor, patient, patient_id


def _schedule(doctor: FlaskClient, patient_id: str, kind: str, every: str = "7") -> int:
    token = csrf_from(doctor, f"/patients/{patient_id}")
    reply = doctor.post(
        f"/patients/{patient_id}/schedule",
        data={"csrf_token": token, "action": "add", "kind": kind, "every_days": every},
    )
    return reply.status_code


def test_scheduled_phq9_with_item_9_flags_and_opens_the_crisis_page(app: Flask, box: Box) -> None:
    doctor, patient, patient_id = _set_up(app, box)
    assert patient.get("/me/measures/phq9").status_code == 404  # nothing scheduled yet
    assert _schedule(doctor, patient_id, "PHQ9") == 302
    home = patient.get("/me").get_data(as_text=True)
    assert "A questionnaire is due: PHQ-9" in home
    token = csrf_from(patient, "/me/measures/phq9")
    missing = patient.post("/me/measures/phq9", data={"csrf_token": token, "q1": "1"})
    assert missing.status_code == 400
    sent = patient.post("/me/measures/phq9", data={"csrf_token": token, **PHQ9_ITEM9})
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/me/crisis")
    crisis = patient.get("/me/crisis").get_data(as_text=True)
    assert "Your care team has been told" in crisis
    store = box.store
    flag = store.RiskFlag.get()
    assert flag.patient_id == patient_id and flag.state == "open"
    answer = store.QuestionnaireResponse.get()
    assert answer.session_id is None and answer.score == 9
    # Answered: no longer due, and the care team sees it on the dashboard and the chart.
    assert patient.get("/me/measures/phq9").status_code == 404
    assert "A questionnaire is due" not in patient.get("/me").get_data(as_text=True)
    assert "Needs follow-up" in doctor.get("/dashboard").get_data(as_text=True)
    chart = doctor.get(f"/patients/{patient_id}").get_data(as_text=True)
    assert "9 / 27" in chart


def test_daily_mood_check_is_stored_encrypted_and_charted(app: Flask, box: Box) -> None:
    doctor, patient, patient_id = _set_up(app, box)
    assert _schedule(doctor, patient_id, "MOOD", "1") == 302
    assert "Your daily mood check is due." in patient.get("/me").get_data(as_text=True)
    token = csrf_from(patient, "/me/mood")
    assert patient.post("/me/mood", data={"csrf_token": token, "mood": "7"}).status_code == 400
    done = patient.post(
        "/me/mood", data={"csrf_token": token, "mood": "2", "note": "rain all day, stayed in"}
    )
    assert done.status_code == 200
    assert "Your daily mood check is due." not in patient.get("/me").get_data(as_text=True)
    store = box.store
    raw = store.db.execute_sql("SELECT score, note FROM mood_entry").fetchone()
    assert b"rain all day" not in bytes(raw[1])
    assert store.MoodEntry.get().score == 2
    kinds = {e.record_type for e in store.OutboxEntry.select()}
    assert {"mood_entry", "measure_schedule"} <= kinds
    page = doctor.get(f"/patients/{patient_id}").get_data(as_text=True)
    assert "rain all day, stayed in" in page and "Daily mood" in page
    bad = doctor.post(
        f"/patients/{patient_id}/schedule",
        data={"csrf_token": token, "action": "add", "kind": "MOOD", "every_days": "0"},
    )
    assert bad.status_code == 400


def test_safety_plan_written_by_clinician_read_by_patient(app: Flask, box: Box) -> None:
    doctor, patient, patient_id = _set_up(app, box)
    assert "not written a safety plan" in patient.get("/me/plan").get_data(as_text=True)
    token = csrf_from(doctor, f"/patients/{patient_id}/safety-plan")
    empty = doctor.post(f"/patients/{patient_id}/safety-plan", data={"csrf_token": token})
    assert empty.status_code == 400
    saved = doctor.post(
        f"/patients/{patient_id}/safety-plan",
        data={
            "csrf_token": token,
            "warning_signs": "Not sleeping, skipping meals",
            "help": "My sister Ana, 555 0101",
        },
    )
    assert saved.status_code == 302
    plan = patient.get("/me/plan")
    text = plan.get_data(as_text=True)
    assert "Not sleeping, skipping meals" in text and "My sister Ana" in text
    assert "no-store" not in plan.headers.get("Cache-Control", "")
    raw = box.store.db.execute_sql("SELECT sections FROM safety_plan").fetchone()[0]
    assert b"sister" not in bytes(raw)
    assert box.store.OutboxEntry.get(record_type="safety_plan").lane == 0  # urgent lane
    worker = patient.get("/me/offline.js")
    assert worker.status_code == 200 and worker.mimetype == "text/javascript"
    out = patient.post("/me/sign-out", data={"csrf_token": csrf_from(patient, "/me")})
    assert "cache" in out.headers["Clear-Site-Data"]


def test_next_session_reminder(app: Flask, box: Box) -> None:
    _doctor, patient, patient_id = _set_up(app, box)
    store = box.store
    soon = (datetime.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    group = store.GroupSession.create(title="Next group", starts_at=soon, facilitator=1)
    store.Attendance.create(session=group, patient=patient_id, status="absent")
    assert f"Your next session: {soon:%Y-%m-%d %H:%M}" in patient.get("/me").get_data(as_text=True)


def test_waiting_room_shows_what_is_due(app: Flask, box: Box) -> None:
    doctor, _patient, patient_id = _set_up(app, box)
    assert _schedule(doctor, patient_id, "GAD7") == 302
    seat = box.store.Attendance.get(box.store.Attendance.patient == patient_id)
    joined = app.test_client()
    with joined.session_transaction() as cookie:
        cookie["attendance"], cookie["patient"] = seat.id, patient_id
    page = joined.get("/join/wait").get_data(as_text=True)
    assert "A questionnaire is due: GAD-7" in page
    assert "Open your space with your access card to answer." in page

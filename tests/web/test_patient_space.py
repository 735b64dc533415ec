"""A patient's space opened with an access card: issue, sign in, messages both ways,
revoking, expiry, the throttle, and what is stored."""

from __future__ import annotations

import re
import time
from datetime import datetime

from flask import Flask
from flask.testing import FlaskClient

from appliance.box import Box
from appliance.clinical.access_cards import clean_card_code
from appliance.clinical.session_codes import assign_codes
from tests.web.conftest import csrf_from, sign_in

_CODE = re.compile(r'id="card-code">([A-Z0-9-]+)<')


def _patient_in_care(box: Box, app: Flask, name: str = "Rowan Ash") -> str:
    """A patient with a seat in a session dr.ada (user 1) runs; their id."""
    store = box.store
    group = store.GroupSession(
        title="Thursday group", starts_at=datetime(2031, 1, 9, 10), facilitator=1
    )
    assign_codes(group, app.config["SECRET_KEY"])
    group.save()
    person = store.Patient.create(display_name=name)
    store.Attendance.create(session=group, patient=person, display_name=name, status="left")
    return person.id


def _issue(doctor: FlaskClient, patient_id: str) -> str:
    token = csrf_from(doctor, f"/patients/{patient_id}/card")
    page = doctor.post(
        f"/patients/{patient_id}/card", data={"csrf_token": token, "action": "issue"}
    )
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "<svg" in text  # the QR code
    match = _CODE.search(text)
    assert match, "the printed card shows no code"
    return match.group(1)


def _open_space(app: Flask, code: str) -> tuple[FlaskClient, int]:
    client = app.test_client()
    token = csrf_from(client, "/card")
    reply = client.post("/card", data={"csrf_token": token, "code": code.lower()})
    return client, reply.status_code


def test_card_opens_the_space_and_messages_go_both_ways(app: Flask, box: Box) -> None:
    patient_id = _patient_in_care(box, app)
    doctor = app.test_client()
    sign_in(doctor)
    code = _issue(doctor, patient_id)
    patient, status = _open_space(app, code)
    assert status == 302
    home = patient.get("/me").get_data(as_text=True)
    assert "Rowan Ash" in home
    token = csrf_from(patient, "/me/messages")
    assert "not for emergencies" in patient.get("/me/messages").get_data(as_text=True)
    sent = patient.post(
        "/me/messages", data={"csrf_token": token, "body": "I slept badly all week"}
    )
    assert sent.status_code == 302
    dashboard = doctor.get("/dashboard").get_data(as_text=True)
    assert "1 unread" in dashboard and "Rowan Ash" in dashboard
    thread = doctor.get(f"/patients/{patient_id}/messages").get_data(as_text=True)
    assert "I slept badly all week" in thread
    assert "1 unread" not in doctor.get("/dashboard").get_data(as_text=True)
    token = csrf_from(doctor, f"/patients/{patient_id}/messages")
    doctor.post(
        f"/patients/{patient_id}/messages",
        data={"csrf_token": token, "body": "Thank you. Let us talk on Thursday."},
    )
    assert 'id="unread"' in patient.get("/me").get_data(as_text=True)
    assert "Let us talk on Thursday" in patient.get("/me/messages").get_data(as_text=True)
    assert 'id="unread"' not in patient.get("/me").get_data(as_text=True)

    # Stored encrypted, queued for sync, and nothing of it in the card table.
    store = box.store
    raw = [bytes(r[0]) for r in store.db.execute_sql("SELECT body FROM secure_message")]
    assert len(raw) == 2 and not any(b"slept" in r or b"Thursday" in r for r in raw)
    queued = store.OutboxEntry.select().where(store.OutboxEntry.record_type == "secure_message")
    assert queued.count() == 2
    card_row = store.db.execute_sql("SELECT code_index FROM patient_card").fetchone()[0]
    assert clean_card_code(code) not in card_row


def test_revoked_and_reissued_cards(app: Flask, box: Box) -> None:
    patient_id = _patient_in_care(box, app)
    doctor = app.test_client()
    sign_in(doctor)
    first = _issue(doctor, patient_id)
    patient, _ = _open_space(app, first)
    assert patient.get("/me").status_code == 200
    second = _issue(doctor, patient_id)
    # Re-issuing stops the old card, and the session it opened, at once.
    assert patient.get("/me").status_code == 302
    assert _open_space(app, first)[1] == 404
    again, status = _open_space(app, second)
    assert status == 302 and again.get("/me").status_code == 200
    token = csrf_from(doctor, f"/patients/{patient_id}/card")
    doctor.post(f"/patients/{patient_id}/card", data={"csrf_token": token, "action": "revoke"})
    assert again.get("/me").status_code == 302
    assert _open_space(app, second)[1] == 404
    actions = [e.action for e in box.store.AuditLog.select()]
    assert actions.count("card.issue") == 2 and "card.revoke" in actions


def test_card_sessions_expire(app: Flask, box: Box) -> None:
    app.config["CARD_IDLE_SECONDS"] = 1
    patient_id = _patient_in_care(box, app)
    doctor = app.test_client()
    sign_in(doctor)
    patient, _ = _open_space(app, _issue(doctor, patient_id))
    assert patient.get("/me").status_code == 200
    time.sleep(1.5)
    reply = patient.get("/me")
    assert reply.status_code == 302 and reply.headers["Location"].endswith("/card")


def test_wrong_card_codes_are_throttled(app: Flask, box: Box) -> None:
    client = app.test_client()
    token = csrf_from(client, "/card")
    statuses = [
        client.post("/card", data={"csrf_token": token, "code": "ABCD-EFGH-JKMN"}).status_code
        for _ in range(11)
    ]
    assert statuses[:10] == [404] * 10 and statuses[10] == 429
    bad = client.post("/card", data={"csrf_token": token, "code": "<script>"})
    assert bad.status_code == 429  # over its budget, a client is not even told


def test_message_checks_and_admin_emergency_contact(app: Flask, box: Box) -> None:
    from appliance.accounts import create_user

    create_user(box.store, "admin.ann", "correct horse battery", "admin")
    patient_id = _patient_in_care(box, app)
    doctor = app.test_client()
    sign_in(doctor)
    patient, _ = _open_space(app, _issue(doctor, patient_id))
    token = csrf_from(patient, "/me/messages")
    empty = patient.post("/me/messages", data={"csrf_token": token, "body": "   "})
    assert empty.status_code == 400
    long = patient.post("/me/messages", data={"csrf_token": token, "body": "x" * 2001})
    assert long.status_code == 400 and "2000" in long.get_data(as_text=True)
    # A clinician may not set the clinic's emergency contact; an admin may.
    assert doctor.get("/admin/emergency-contact").status_code == 403
    admin = app.test_client()
    sign_in(admin, "admin.ann")
    token_a = csrf_from(admin, "/admin/emergency-contact")
    blank = admin.post("/admin/emergency-contact", data={"csrf_token": token_a, "contact": ""})
    assert blank.status_code == 400
    admin.post(
        "/admin/emergency-contact",
        data={"csrf_token": token_a, "contact": "Call 112 or the crisis line 0800 123 456"},
    )
    assert "0800 123 456" in patient.get("/me/messages").get_data(as_text=True)


def test_a_card_cannot_flood_the_care_team(app: Flask, box: Box) -> None:
    patient_id = _patient_in_care(box, app)
    doctor = app.test_client()
    sign_in(doctor)
    patient, _ = _open_space(app, _issue(doctor, patient_id))
    token = csrf_from(patient, "/me/messages")
    statuses = [
        patient.post("/me/messages", data={"csrf_token": token, "body": f"note {n}"}).status_code
        for n in range(21)
    ]
    assert statuses[:20] == [302] * 20 and statuses[20] == 429
    assert box.store.SecureMessage.select().count() == 20
